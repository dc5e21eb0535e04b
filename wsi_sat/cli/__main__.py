"""python -m wsi_sat.cli"""

from wsi_sat.cli import main

main()
