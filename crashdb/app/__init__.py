"""Applications built on the public component API: the command line, the demo, the legacy
importer and the processor service. Nothing here touches a backend directly."""
