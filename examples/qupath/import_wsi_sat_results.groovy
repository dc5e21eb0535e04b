/*
 * Import wsi-sat results into a QuPath project (QuPath >= 0.4).
 *
 * Open the project in QuPath, then Automate > Script editor, open this file, set RESULTS_DIR to
 * the --out folder of `wsi-sat run`, and Run (once: the script walks the whole project).
 * For every image of the project, <stem>.geojson is read from RESULTS_DIR, where <stem> is the
 * image's file name less its slide suffix (case1.HE.svs -> case1.HE), as wsi-sat names its
 * outputs; its objects (annotations for regions, detections for instances, with their class and
 * the measurements 'wsi-sat area µm^2', 'wsi-sat perimeter µm' and 'score') are added to the
 * image's objects and the image is saved. With REPLACE true, objects of the same class imported
 * by an earlier run are removed first. Coordinates in the files are QuPath's (level 0, the
 * slide's bounds offset applied), so they land where wsi-sat saw them.
 */
import qupath.lib.io.PathIO

def RESULTS_DIR = '/path/to/results'   // the --out folder of `wsi-sat run`
def REPLACE = true                      // remove earlier objects of the imported classes first
def IMPORT_TISSUE = false               // also import <stem>.tissue.geojson (the tissue detection)

// wsi-sat's slide suffixes (wsi_sat/pipeline/plan.py, SLIDE_SUFFIXES): keep the two in step
def SLIDE_SUFFIXES = ['.ome.tiff', '.ome.tif', '.svs', '.ndpi', '.tiff', '.tif', '.scn', '.mrxs',
                      '.vms', '.svslide', '.bif', '.dcm']

def stemOf(String name, List<String> suffixes) {
    def lower = name.toLowerCase()
    for (suffix in suffixes) {
        if (lower.endsWith(suffix) && lower.length() > suffix.length())
            return name.substring(0, name.length() - suffix.length())
    }
    return name
}

def project = getProject()
if (project == null) {
    println 'Open a project first'
    return
}
int imported = 0
for (entry in project.getImageList()) {
    def stem = stemOf(entry.getImageName(), SLIDE_SUFFIXES)
    def files = [new File(RESULTS_DIR, stem + '.geojson')]
    if (IMPORT_TISSUE)
        files << new File(RESULTS_DIR, stem + '.tissue.geojson')
    files = files.findAll { it.isFile() }
    if (files.isEmpty()) {
        println "${entry.getImageName()}: no ${stem}.geojson in ${RESULTS_DIR}"
        continue
    }
    def imageData = entry.readImageData()
    def hierarchy = imageData.getHierarchy()
    for (file in files) {
        def objects = PathIO.readObjects(file)
        if (REPLACE) {
            def classes = objects.collect { it.getPathClass() }.toSet()
            def old = hierarchy.getFlattenedObjectList(null).findAll {
                !it.isRootObject() && it.getPathClass() in classes
            }
            hierarchy.removeObjects(old, true)
        }
        hierarchy.addObjects(objects)
        println "${entry.getImageName()}: ${objects.size()} objects from ${file.getName()}"
        imported += objects.size()
    }
    entry.saveImageData(imageData)
}
println "Done: ${imported} objects imported"
