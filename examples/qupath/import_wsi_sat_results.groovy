/*
 * Import wsi-sat results into a QuPath project (QuPath >= 0.4).
 *
 * Open the project in QuPath, then Automate > Script editor, open this file, set RESULTS_DIR to
 * the --out folder of `wsi-sat run`, and Run. The script walks the whole project.
 *
 * DRY_RUN (the default) only lists, for every image, which results file it matched, how, and
 * what it would add and remove; set DRY_RUN = false to import.
 *
 * Matching an image to its results: by the image file itself first (each <stem>.run.json in
 * RESULTS_DIR names the slide it segmented; the project entry's server URIs are compared with
 * it, by full path, then by file name, which survives slides mounted elsewhere), then by the
 * project entry's name less its slide suffix (case1.HE.svs -> case1.HE), as wsi-sat names its
 * outputs. Renamed project entries are still found by their file.
 *
 * Only objects wsi-sat wrote are ever removed: every object in a wsi-sat GeoJSON carries the
 * metadata 'wsi-sat run' (annotations keep it in QuPath) and measurements named 'wsi-sat ...'
 * (detections keep those); with REPLACE, objects bearing either tag whose class is among the
 * imported ones are removed before the new ones are added (a rerun's results replace the old).
 * A pathologist's own annotations, of any class, are never touched. To keep a wsi-sat object
 * through a later import, give it another class.
 *
 * Coordinates in the files are QuPath's (level 0, the slide's bounds offset applied), so the
 * objects land where wsi-sat saw them.
 *
 * QuPath API used (all public since v0.4.0): QP.getProject; Project.getImageList;
 * ProjectImageEntry.getImageName / getURIs / readImageData / saveImageData;
 * ImageData.getHierarchy; PathObjectHierarchy.getFlattenedObjectList / removeObjects /
 * addObjects; PathIO.readObjects(File); PathObject.getPathClass / getMeasurementList /
 * isRootObject; MeasurementList.getMeasurementNames; MetadataStore.getMetadataString /
 * putMetadataValue.
 */
import groovy.json.JsonSlurper
import qupath.lib.io.PathIO
import qupath.lib.objects.MetadataStore

def RESULTS_DIR = '/path/to/results'   // the --out folder of `wsi-sat run`
def DRY_RUN = true                      // list what would happen; false: import
def REPLACE = true                      // replace objects an earlier wsi-sat import added
def IMPORT_TISSUE = false               // also import <stem>.tissue.geojson (the tissue detection)

// wsi-sat's slide suffixes (wsi_sat/io/slide.py, SLIDE_SUFFIXES): keep the two in step
def SLIDE_SUFFIXES = ['.ome.tiff', '.ome.tif', '.svs', '.ndpi', '.tiff', '.tif', '.scn', '.mrxs',
                      '.vms', '.svslide', '.bif', '.dcm']
def TAG = 'wsi-sat run'                 // wsi_sat/writers/geojson.py, TAG

def stemOf(String name, List<String> suffixes) {
    def lower = name.toLowerCase()
    for (suffix in suffixes) {
        if (lower.endsWith(suffix) && lower.length() > suffix.length())
            return name.substring(0, name.length() - suffix.length())
    }
    return name
}

// an object wsi-sat wrote: its metadata tag (annotations) or its 'wsi-sat ...' measurements
def writtenByWsiSat(obj, String tag) {
    if (obj instanceof MetadataStore && obj.getMetadataString(tag) != null)
        return true
    return obj.getMeasurementList().getMeasurementNames().any { it.startsWith('wsi-sat ') }
}

// the slides wsi-sat segmented, from the run.json files: full path and file name -> stem
def byPath = [:]
def byFileName = [:]
def results = new File(RESULTS_DIR)
if (!results.isDirectory()) {
    println "RESULTS_DIR '${RESULTS_DIR}' is not a folder: set it to the --out of wsi-sat run"
    return
}
results.listFiles().findAll { it.name.endsWith('.run.json') }.each { runJson ->
    def stem = runJson.name.substring(0, runJson.name.length() - '.run.json'.length())
    def slidePath = new JsonSlurper().parse(runJson)?.slide?.path
    if (slidePath) {
        def file = new File(slidePath.toString())
        byPath[file.absolutePath] = stem
        byFileName[file.name] = stem
    }
}

def matchEntry(entry, Map byPath, Map byFileName, List<String> suffixes) {
    for (uri in entry.getURIs()) {
        if (uri.scheme != 'file')
            continue
        def file = new File(uri)
        if (byPath.containsKey(file.absolutePath))
            return [byPath[file.absolutePath], "its file ${file.absolutePath}"]
        if (byFileName.containsKey(file.name))
            return [byFileName[file.name], "its file name ${file.name}"]
    }
    return [stemOf(entry.getImageName(), suffixes), "its project name ${entry.getImageName()}"]
}

def project = getProject()
if (project == null) {
    println 'Open a project first'
    return
}
int added = 0, removed = 0
for (entry in project.getImageList()) {
    def (stem, how) = matchEntry(entry, byPath, byFileName, SLIDE_SUFFIXES)
    def files = [new File(results, stem + '.geojson')]
    if (IMPORT_TISSUE)
        files << new File(results, stem + '.tissue.geojson')
    files = files.findAll { it.isFile() }
    if (files.isEmpty()) {
        println "${entry.getImageName()}: no ${stem}.geojson in ${RESULTS_DIR} (matched by ${how})"
        continue
    }
    def imageData = entry.readImageData()
    def hierarchy = imageData.getHierarchy()
    for (file in files) {
        def objects = PathIO.readObjects(file)
        objects.findAll { it instanceof MetadataStore }.each {
            if (it.getMetadataString(TAG) == null)
                it.putMetadataValue(TAG, 'imported')
        }
        def old = []
        if (REPLACE) {
            def classes = objects.collect { it.getPathClass() }.toSet()
            old = hierarchy.getFlattenedObjectList(null).findAll {
                !it.isRootObject() && it.getPathClass() in classes && writtenByWsiSat(it, TAG)
            }
        }
        def verb = DRY_RUN ? 'would add' : 'added'
        println "${entry.getImageName()}: ${file.name} (matched by ${how}): ${verb} " +
                "${objects.size()} objects, ${DRY_RUN ? 'would remove' : 'removed'} ${old.size()} " +
                "earlier wsi-sat objects"
        if (!DRY_RUN) {
            hierarchy.removeObjects(old, true)
            hierarchy.addObjects(objects)
        }
        added += objects.size()
        removed += old.size()
    }
    if (!DRY_RUN)
        entry.saveImageData(imageData)
}
println DRY_RUN ? "Dry run: would add ${added} objects and remove ${removed}; set DRY_RUN = false to import"
                : "Done: ${added} objects added, ${removed} earlier wsi-sat objects removed"
