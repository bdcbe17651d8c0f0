"""``crashdb demo``: a small crash pipeline, played for real against a crashdb database.

A *collector* receives three weeks of made-up but realistic crashes (a few signatures that
dominate and a long tail, several products, versions and operating systems, add-ons, plugin
crashes and hangs) and stores each as a raw JSON crash, then queues a job for it. Several
:class:`~crashdb.app.service.ProcessorService` instances claim the jobs, turn each raw crash into a
report (with its extensions and plugins) and complete the jobs. Then every day is rolled up
(``db.rollups.runDay``: top crashers, signature lifecycles), and the top crashers, the new
signatures of the regressed beta, the correlations of its top signature (an add-on is planted in
most of its crashes) and the partitions the run made are printed. Usage figures (active daily
users) are fed for every product version and day, and the signatures that exploded on the last
complete day are listed: one planted to explode then comes first.

There are no minidumps here: what ``minidump_stackwalk`` would read from the dump (signature,
operating system, CPU, crash reason and address) travels in the raw crash under ``"dump"``.
"""

from crashdb.app.demo.generator import DEMO_DAYS, CrashGenerator, crashUuid, dayOfUuid
from crashdb.app.demo.pipeline import DEFAULT_CRASHES, DEFAULT_PROCESSORS, Demo, runDemo
from crashdb.app.demo.processing import reportFromRawCrash

__all__ = ["DEFAULT_CRASHES", "DEFAULT_PROCESSORS", "DEMO_DAYS", "CrashGenerator", "Demo",
           "crashUuid", "dayOfUuid", "reportFromRawCrash", "runDemo"]
