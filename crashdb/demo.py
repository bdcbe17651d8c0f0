"""``crashdb demo``: a small crash pipeline, played for real against a crashdb database.

A *collector* receives three weeks of made-up but realistic crashes (a few signatures that
dominate and a long tail, several products, versions and operating systems, add-ons, plugin
crashes and hangs) and stores each as a raw JSON crash, then queues a job for it. Several
:class:`~crashdb.service.ProcessorService` instances claim the jobs, turn each raw crash into a
report (with its extensions and plugins) and complete the jobs. Then every day is rolled up into
the top-crashers-by-signature table, which is printed with the partitions the run made. Usage
figures (active daily users) are fed for every product version and day, and the signatures that
exploded on the last complete day are listed: one planted to explode then comes first.

There are no minidumps here: what ``minidump_stackwalk`` would read from the dump (signature,
operating system, CPU, crash reason and address) travels in the raw crash under ``"dump"``.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import itertools
import math
import random
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer, task

from crashdb.exceptions import CrashDBError
from crashdb.partitions import WEEK
from crashdb.progress import Progress

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
DEMO_DAYS = 21

# -- what the crashes look like -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Version:
    version: str
    channel: str
    build: str
    share: float


@dataclasses.dataclass(frozen=True)
class Product:
    name: str
    productid: str
    share: float
    versions: tuple[Version, ...]
    systems: tuple[tuple[str, float], ...]  # (os_name, share)


PRODUCTS = (
    Product(
        "Firefox", "{ec8030f7-c20a-464f-9b0e-13a3a9e97384}", 0.68,
        (
            Version("16.0.1", "release", "20121010144125", 0.45),
            Version("16.0", "release", "20121005155445", 0.16),
            Version("17.0b3", "beta", "20121025124433", 0.17),
            Version("18.0a2", "aurora", "20121029042015", 0.09),
            Version("19.0a1", "nightly", "20121030030607", 0.06),
            Version("10.0.10esr", "esr", "20121024073032", 0.07),
        ),
        (("Windows NT", 0.80), ("Mac OS X", 0.13), ("Linux", 0.07)),
    ),
    Product(
        "Thunderbird", "{3550f703-e582-4d05-9a08-453d09bdfdc6}", 0.14,
        (
            Version("16.0.2", "release", "20121026133515", 0.78),
            Version("17.0b2", "beta", "20121029121103", 0.22),
        ),
        (("Windows NT", 0.70), ("Mac OS X", 0.18), ("Linux", 0.12)),
    ),
    Product(
        "FennecAndroid", "{aa3c5121-dab2-40e2-81ca-7ea25febc110}", 0.12,
        (
            Version("16.0.2", "release", "20121025201223", 0.70),
            Version("17.0b3", "beta", "20121025124433", 0.30),
        ),
        (("Linux", 1.0),),
    ),
    Product(
        "SeaMonkey", "{92650c4d-4b8e-4d2a-b7eb-24ecf4f6b63a}", 0.06,
        (Version("2.13.2", "release", "20121027191302", 1.0),),
        (("Windows NT", 0.60), ("Linux", 0.25), ("Mac OS X", 0.15)),
    ),
)

OS_VERSIONS = {
    "Windows NT": (("6.1.7601 Service Pack 1", 0.55), ("5.1.2600 Service Pack 3", 0.25),
                   ("6.2.9200", 0.12), ("6.0.6002 Service Pack 2", 0.08)),
    "Mac OS X": (("10.8.2 12C60", 0.45), ("10.7.5 11G63", 0.35), ("10.6.8 10K549", 0.20)),
    "Linux": (("3.2.0-32-generic #51-Ubuntu SMP x86_64", 0.5), ("0.0.0 Linux 3.0.31 armv7l", 0.3),
              ("3.6.2-4.fc17.x86_64 #1 SMP x86_64", 0.2)),
}
CPUS = {
    "Windows NT": (("x86", "GenuineIntel family 6 model 23 stepping 10 | 2"),
                   ("x86", "AuthenticAMD family 16 model 6 stepping 3 | 2"),
                   ("amd64", "GenuineIntel family 6 model 42 stepping 7 | 4")),
    "Mac OS X": (("amd64", "family 6 model 42 stepping 7 | 4"),
                 ("x86", "GenuineIntel family 6 model 23 stepping 10 | 2")),
    "Linux": (("amd64", "family 6 model 42 stepping 7 | 4"), ("arm", "ARMv7 ARM Cortex-A9 | 2")),
}
REASONS = {
    "Windows NT": ("EXCEPTION_ACCESS_VIOLATION_READ", "EXCEPTION_ACCESS_VIOLATION_WRITE",
                   "EXCEPTION_BREAKPOINT", "EXCEPTION_STACK_OVERFLOW"),
    "Mac OS X": ("EXC_BAD_ACCESS / KERN_INVALID_ADDRESS",
                 "EXC_BAD_ACCESS / KERN_PROTECTION_FAILURE", "EXC_BAD_INSTRUCTION / 0x00000001"),
    "Linux": ("SIGSEGV", "SIGABRT", "SIGBUS"),
}
LIBRARIES = {"Windows NT": "xul.dll", "Mac OS X": "XUL", "Linux": "libxul.so"}

# (signature, weight, only on this OS or None, process type); the first few dominate.
HEAD_SIGNATURES: tuple[tuple[str, float, str | None, str | None], ...] = (
    ("js::gc::MarkObjectUnbarriered", 9.0, None, None),
    ("F_1152915508__________________________________", 7.5, "Windows NT", "plugin"),
    ("hang | WaitForSingleObjectEx | WaitForSingleObject | PR_WaitCondVar"
     " | mozilla::CondVar::Wait", 6.0, "Windows NT", "plugin"),
    ("mozalloc_abort | NS_DebugBreak_P | mozilla::ipc::RPCChannel::Call", 4.5, None, None),
    ("EMPTY: no crashing thread identified; corrupt dump", 4.0, None, None),
    ("nsObjectLoadingContent::Instantiate", 3.0, None, None),
    ("@0x0", 2.6, None, None),
    ("RtlEnterCriticalSection | PR_EnterMonitor", 2.2, "Windows NT", None),
    ("objc_msgSend | IdleTimerVector", 2.0, "Mac OS X", None),
    ("OOM | small", 1.8, None, None),
    ("libc.so@0x1c1a8 | dalvik.so@0x4e1f0", 1.6, "Linux", None),
    ("hang | NtUserMessageCall | SendMessageW | mozilla::plugins::PluginInstanceChild::"
     "NPP_SetWindow", 1.4, "Windows NT", "plugin"),
)
TAIL_CLASSES = (
    "nsDocShell", "PresShell", "nsCSSFrameConstructor", "gfxFont", "nsXPConnect", "nsGlobalWindow",
    "imgRequest", "nsHttpChannel", "nsFrameManager", "nsHTMLEditor", "js::mjit::Compiler",
    "mozilla::layers::LayerManagerOGL", "nsImapProtocol", "nsMsgDBFolder", "mozilla::dom::Element",
)
TAIL_METHODS = (
    "Destroy", "Notify", "Init", "Paint", "Release", "OnStopRequest", "ContentRemoved",
    "ReflowChild", "Run", "HandleEvent", "GetProperty",
)
# A regression new in the last week of the three, and a bug fixed after the first week.
REGRESSION = ("mozilla::dom::WebSocket::Send", "17.0b3", 0.35)  # share of that version's crashes
FIXED = ("nsPluginHost::TrySetUpPluginInstance", 0.06)

PLUGINS = {
    "Windows NT": (("NPSWF32_11_4_402_287.dll", "Shockwave Flash", "11.4.402.287", 0.75),
                   ("npjp2.dll", "Java(TM) Platform SE 7 U9", "10.9.2.5", 0.12),
                   ("npctrl.dll", "Silverlight Plug-In", "5.1.10411.0", 0.08),
                   ("npqtplugin.dll", "QuickTime Plug-in 7.7.2", "7.7.2.0", 0.05)),
    "Mac OS X": (("Flash Player.plugin", "Shockwave Flash", "11.4.402.287", 0.85),
                 ("Silverlight.plugin", "Silverlight Plug-In", "5.1.10411.0", 0.15)),
    "Linux": (("libflashplayer.so", "Shockwave Flash", "11.2.202.243", 0.9),
              ("libtotem-cone-plugin.so", "VLC Multimedia Plugin", "2.0.3", 0.1)),
}
ADDONS = (
    ("{972ce4c6-7e08-4474-a285-3208198ce6fd}", "16.0.1", 0.95),  # the default theme
    ("{d10d0bf8-f5b5-c8b4-a8b2-2b9879e08c5d}", "2.2", 0.30),  # Adblock Plus
    ("{b9db16a4-6edc-47ec-a1f4-b86292ed211d}", "5.1.3", 0.12),  # Video DownloadHelper
    ("firebug@software.joehewitt.com", "1.10.5", 0.08),
    ("{e4a8a97b-f2ed-450b-b12d-ee082ba24781}", "1.5", 0.06),  # Greasemonkey
    ("{73a6fe31-595d-460b-a920-fcc0f8843232}", "2.5.6", 0.10),  # NoScript
    ("{20a82645-c095-46ed-80e3-08825760534b}", "1.1", 0.07),  # .NET Framework Assistant
    ("toolbar@ask.com", "3.15.10.0", 0.05),
)
URLS = ("https://www.facebook.com/", "http://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://mail.google.com/mail/u/0/", "http://www.google.com/search?q=crash",
        "http://www.bbc.co.uk/news/", "about:blank", "https://twitter.com/")
COMMENTS = ("Crashed while watching a video", "it crashed again when I opened my mail",
            "Firefox froze then closed", "Happens every time I start it")


def _choose(rng: random.Random, weighted: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([item for item, _ in weighted], [w for _, w in weighted])[0]


@dataclasses.dataclass
class _Pool:
    """Signatures for one OS, sampled by weight."""

    entries: list[tuple[str, str | None]]  # (signature, process type)
    cumulative: list[float]

    def sample(self, rng: random.Random) -> tuple[str, str | None]:
        point = rng.random() * self.cumulative[-1]
        return self.entries[bisect.bisect_right(self.cumulative, point)]


def _signaturePools() -> dict[str, _Pool]:
    """Per OS: the dominant signatures, then a long tail with Zipf-like weights."""
    tail = [f"{cls}::{method}" for cls, method in itertools.product(TAIL_CLASSES, TAIL_METHODS)]
    random.Random(1).shuffle(tail)  # the same tail every run
    pools = {}
    for os_name in LIBRARIES:
        entries: list[tuple[str, str | None]] = []
        weights: list[float] = []
        for signature, weight, only, process_type in HEAD_SIGNATURES:
            if only in (None, os_name):
                entries.append((signature, process_type))
                weights.append(weight)
        for rank, signature in enumerate(tail, start=1):
            entries.append((signature, None))
            weights.append(1.2 / rank**0.9)
        pools[os_name] = _Pool(entries, list(itertools.accumulate(weights)))
    return pools


# -- the collector's side: raw crashes -----------------------------------------------------------


def crashUuid(rng: random.Random, day: datetime.date) -> str:
    """A crash id that ends with its day, as Socorro's did (``...-2121016`` for 2012-10-16), so
    a processor can read the raw crash from the right week without a search."""
    text = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
    return text[:-7] + f"2{day:%y%m%d}"


def dayOfUuid(uuid: str) -> datetime.datetime:
    """Midnight UTC of the day a :func:`crashUuid` ends with."""
    return datetime.datetime.strptime(uuid[-6:], "%y%m%d").replace(tzinfo=UTC)


class CrashGenerator:
    """Made-up crashes over ``days`` days ending at ``now``: one ``(uuid, received, raw)`` each."""

    def __init__(self, rng: random.Random, now: datetime.datetime, days: int = DEMO_DAYS) -> None:
        self.rng = rng
        self.now = now
        self.start = now - days * DAY
        self.days = days
        self.pools = _signaturePools()

    def _received(self) -> datetime.datetime:
        """A time in the window: fewer crashes at weekends, more in the European evening."""
        rng = self.rng
        while True:
            when = self.start + datetime.timedelta(seconds=rng.random() * self.days * 86400)
            hour = when.hour + when.minute / 60
            weight = 0.55 + 0.45 * math.cos((hour - 18) / 24 * 2 * math.pi)
            if when.weekday() >= 5:
                weight *= 0.8
            if rng.random() < weight:
                return when

    def crashes(self, count: int) -> list[tuple[str, datetime.datetime, dict[str, Any]]]:
        """``count`` crashes in order of arrival."""
        crashes = [self.crash() for _ in range(count)]
        crashes.sort(key=lambda crash: crash[1])
        return crashes

    def crash(self) -> tuple[str, datetime.datetime, dict[str, Any]]:
        rng = self.rng
        received = self._received()
        product = _choose(rng, [(p, p.share) for p in PRODUCTS])
        version = _choose(rng, [(v, v.share) for v in product.versions])
        os_name = _choose(rng, product.systems)
        signature, process_type = self.pools[os_name].sample(rng)
        age = (received - self.start) / DAY  # days into the window
        regressed = version.version == REGRESSION[1] and age >= self.days - 6
        if regressed and rng.random() < REGRESSION[2]:
            signature, process_type = REGRESSION[0], None
        elif age < 7 and rng.random() < FIXED[1]:
            signature, process_type = FIXED[0], "plugin"
        if product.name == "FennecAndroid" and process_type == "plugin":
            process_type = None  # no out-of-process plugins on Android
        crashed = received - datetime.timedelta(seconds=rng.randrange(5, 600))
        uptime = int(rng.lognormvariate(6.5, 2.2))  # many crash at start-up, some after days
        if signature.startswith("EMPTY"):
            uptime = rng.randrange(0, 30)
        installed = crashed - datetime.timedelta(seconds=rng.randrange(3600, 200 * 86400))
        cpu_name, cpu_info = rng.choice(CPUS[os_name])
        raw: dict[str, Any] = {
            "ProductName": product.name,
            "Version": version.version,
            "BuildID": version.build,
            "ReleaseChannel": version.channel,
            "ProductID": product.productid,
            "Vendor": "Mozilla",
            "CrashTime": str(int(crashed.timestamp())),
            "StartupTime": str(int(crashed.timestamp()) - uptime),
            "InstallTime": str(int(installed.timestamp())),
            "submitted_timestamp": received.isoformat(),
            "Theme": "classic/1.0",
            "dump": {
                "signature": signature,
                "os_name": os_name,
                "os_version": _choose(rng, OS_VERSIONS[os_name]),
                "cpu_name": cpu_name,
                "cpu_info": cpu_info,
                "reason": rng.choice(REASONS[os_name]),
                "address": "0x0" if signature == "@0x0" else f"0x{rng.getrandbits(28):x}",
                "topmost_filenames": f"hg:hg.mozilla.org/releases/mozilla-{version.channel}"
                                     f":js/src/jsgc.cpp:{rng.randrange(1000, 9000)}",
            },
        }
        if rng.random() < 0.6:
            raw["SecondsSinceLastCrash"] = str(rng.randrange(30, 30 * 86400))
        if rng.random() < 0.4:
            raw["URL"] = rng.choice(URLS)
        if rng.random() < 0.05:
            raw["Comments"] = rng.choice(COMMENTS)
            raw["Email"] = f"user{rng.randrange(10000)}@example.com"
        if product.name != "FennecAndroid":
            addons = [f"{addon_id}:{addon_version}" for addon_id, addon_version, share in ADDONS
                      if rng.random() < share]
            raw["Add-ons"] = ",".join(addons)
        if process_type == "plugin":
            filename, name, plugin_version = _choose(
                rng, [(p[:3], p[3]) for p in PLUGINS[os_name]]
            )
            raw.update(ProcessType="plugin", PluginFilename=filename, PluginName=name,
                       PluginVersion=plugin_version)
            if signature.startswith("hang |"):
                raw["HangID"] = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
        day = received.date()
        return crashUuid(rng, day), received, raw


# -- crash rates: usage, and a crash that explodes ---------------------------------------------

# A signature never seen before that the last complete day brings by the dozen (a bad driver
# update, say): ``crashdb explosive`` must list it first.
EXPLOSIVE_SIGNATURE = "mozilla::layers::ImageBridgeChild::FlushAllImages"
CRASHES_PER_100_ADU = 1.0  # sets the usage fed in, relative to the crashes made
RELEASE = ("Firefox", "16.0.1", "16.0", 5)  # users move to 16.0.1 from 16.0, 5 days before the end


def explosionSize(crashes: int) -> int:
    """How many of ``crashes`` the planted signature takes: 40% of a day's Firefox crashes, at
    least 40 (a score of 1.3 and more), at most a quarter of them."""
    daily = crashes / DEMO_DAYS * PRODUCTS[0].share
    return min(crashes // 4, max(40, round(0.4 * daily)))


def withExplosion(
    generator: CrashGenerator, count: int, day: datetime.date
) -> list[tuple[str, datetime.datetime, dict[str, Any]]]:
    """``count`` crashes in order of arrival, ``explosionSize(count)`` of them Firefox crashes
    of :data:`EXPLOSIVE_SIGNATURE` received on ``day`` (and only then)."""
    planted = explosionSize(count)
    crashes = generator.crashes(count - planted)
    rng = generator.rng
    midnight = datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)
    while planted:
        _, received, raw = generator.crash()
        if raw["ProductName"] != "Firefox" or "ProcessType" in raw:
            continue
        moved = midnight + datetime.timedelta(seconds=rng.randrange(86400))
        shift = int((moved - received).total_seconds())
        for key in ("CrashTime", "StartupTime", "InstallTime"):
            raw[key] = str(int(raw[key]) + shift)
        raw["submitted_timestamp"] = moved.isoformat()
        raw["dump"]["signature"] = EXPLOSIVE_SIGNATURE
        crashes.append((crashUuid(rng, day), moved, raw))
        planted -= 1
    crashes.sort(key=lambda crash: crash[1])
    return crashes


def dailyUsers(crashes: int, days: Sequence[datetime.date]) -> list[dict[str, Any]]:
    """ADU rows for every product version and day: as many users as make
    :data:`CRASHES_PER_100_ADU` of the demo's crashes, fewer at weekends (as the crashes are),
    growing 1% a day, and on :data:`RELEASE`'s day users moving to the new version."""
    product_name, new, old, before_end = RELEASE
    release = days[-1] - before_end * DAY
    rows = []
    for index, day in enumerate(days):
        weekday = 0.8 if day.weekday() >= 5 else 1.0
        for product in PRODUCTS:
            users = crashes / DEMO_DAYS * product.share * 100 / CRASHES_PER_100_ADU
            users *= weekday * (1 + 0.01 * index)
            for version in product.versions:
                share = version.share
                if product.name == product_name and day >= release:
                    share *= {new: 1.6, old: 0.4}.get(version.version, 1.0)
                rows.append({"day": day, "product": product.name, "version": version.version,
                             "adu": max(1, round(users * share))})
    return rows


# -- the processor's side: raw crash to report ---------------------------------------------------


def _seconds(raw: dict[str, Any], key: str) -> int | None:
    try:
        return int(raw[key])
    except (KeyError, TypeError, ValueError):
        return None


def _clip(value: Any, length: int) -> Any:
    return value[:length] if isinstance(value, str) else value


def _utcNow() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def reportFromRawCrash(
    uuid: str, raw: dict[str, Any], processor: str, now: Callable[[], datetime.datetime] = _utcNow
) -> dict[str, Any]:
    """The reportdict (with ``extensions`` and ``plugins``) a processor makes of a raw crash."""
    started = now()
    dump = raw.get("dump") or {}
    crash_time = _seconds(raw, "CrashTime")
    startup = _seconds(raw, "StartupTime")
    install = _seconds(raw, "InstallTime")
    report: dict[str, Any] = {
        "uuid": uuid,
        "date_processed": datetime.datetime.fromisoformat(raw["submitted_timestamp"]),
        "client_crash_date": (
            None if crash_time is None else datetime.datetime.fromtimestamp(crash_time, UTC)
        ),
        "product": _clip(raw.get("ProductName"), 30),
        "version": _clip(raw.get("Version"), 16),
        "build": _clip(raw.get("BuildID"), 30),
        "release_channel": raw.get("ReleaseChannel"),
        "productid": raw.get("ProductID"),
        "signature": _clip(dump.get("signature"), 255),
        "url": _clip(raw.get("URL"), 255),
        "install_age": None if None in (crash_time, install) else crash_time - install,
        "uptime": None if None in (crash_time, startup) else crash_time - startup,
        "last_crash": _seconds(raw, "SecondsSinceLastCrash"),
        "cpu_name": _clip(dump.get("cpu_name"), 100),
        "cpu_info": _clip(dump.get("cpu_info"), 100),
        "reason": _clip(dump.get("reason"), 255),
        "address": _clip(dump.get("address"), 20),
        "os_name": _clip(dump.get("os_name"), 100),
        "os_version": _clip(dump.get("os_version"), 100),
        "topmost_filenames": dump.get("topmost_filenames"),
        "email": _clip(raw.get("Email"), 100),
        "user_comments": _clip(raw.get("Comments"), 1024),
        "hangid": raw.get("HangID"),
        "process_type": raw.get("ProcessType"),
        "addons_checked": "Add-ons" in raw,
        "started_datetime": started,
        "success": True,
        "truncated": False,
        "processor_notes": f"crashdb demo processor {processor}",
    }
    extensions = []
    for entry in filter(None, (raw.get("Add-ons") or "").split(",")):
        extension_id, _, extension_version = entry.rpartition(":")
        extensions.append({"extension_id": extension_id or entry,
                           "extension_version": extension_version or None})
    report["extensions"] = extensions
    if raw.get("PluginFilename") and raw.get("PluginName"):
        report["plugins"] = [{"filename": raw["PluginFilename"], "name": raw["PluginName"],
                              "version": raw.get("PluginVersion") or ""}]
        if "Flash" in raw["PluginName"]:
            report["flash_version"] = raw.get("PluginVersion")
    report["completed_datetime"] = now()
    return report


# -- the pipeline ---------------------------------------------------------------------------------

DEFAULT_CRASHES = 4000
DEFAULT_PROCESSORS = 3
COLLECTOR_BATCH = 100  # crashes stored before their jobs are queued together
COLLECTOR_CONCURRENCY = 4
PROCESSOR_CONCURRENCY = 4  # jobs each processor runs at once
POLL_SECONDS = 0.2
STALL_SECONDS = 60.0  # without a crash processed: give up waiting


@dataclasses.dataclass
class DemoResult:
    """What a demo run did, for its summary and for tests."""

    url: str
    schema: tuple[str | None, str | None]
    collected: int = 0
    processed: int = 0  # this run's jobs processed, failed ones included
    failed: int = 0
    days: list[datetime.date] = dataclasses.field(default_factory=list)
    rolled_up: int = 0
    tables: list[str] = dataclasses.field(default_factory=list)
    partitions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    created: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    explosive: list[dict[str, Any]] = dataclasses.field(default_factory=list)



def _rollupDays(start: datetime.datetime, end: datetime.datetime) -> list[datetime.date]:
    days = []
    day = start.date()
    while day <= end.date():
        days.append(day)
        day += DAY
    return days


def _printLine(line: str) -> None:
    print(line, flush=True)  # before the progress lines on stderr, even through a pipe


class Demo:
    """One run of the pipeline against ``db`` (a set-up-free :class:`DBConnector`).

    ``out`` receives the human-readable results line by line; progress goes to
    ``progress_stream`` (stderr by default).
    """

    def __init__(
        self,
        reactor: Any,
        db: Any,
        crashes: int = DEFAULT_CRASHES,
        processors: int = DEFAULT_PROCESSORS,
        seed: int | None = None,
        out: Callable[[str], Any] = _printLine,
        progress_stream: Any = None,
    ) -> None:
        self.reactor = reactor
        self.db = db
        self.crashes = crashes
        self.processors = processors
        self.rng = random.Random(seed)
        self.out = out
        self.progress_stream = progress_stream
        self.result = DemoResult(url=db.engine.url.render_as_string(hide_password=True),
                                 schema=(None, None))
        self._progress: Progress | None = None
        self._ours: set[str] = set()

    async def run(self) -> DemoResult:
        started = time.monotonic()
        await self.db.setup(check_version=False)
        self.result.schema = await self.db.model.upgrade()
        before, after = self.result.schema
        self.out(f"database {self.result.url}: schema {before or 'new'} -> {after}")
        existing = {p["name"] for p in await self.db.partitions.getPartitions()}
        now = datetime.datetime.now(UTC)
        generator = CrashGenerator(self.rng, now)
        crashes = withExplosion(generator, self.crashes, now.date() - DAY)
        self._ours = {uuid for uuid, _, _ in crashes}
        services = await self._startProcessors()
        try:
            with Progress("processing crashes", total=len(crashes),
                          stream=self.progress_stream) as self._progress:
                await self._collect(crashes, services)
                await self._waitForJobs()
        finally:
            for service in services:
                await service.stopService()
        made = self.result.processed - self.result.failed
        self.out(f"collected {self.result.collected} crashes over {DEMO_DAYS} days; "
                 f"{self.processors} processors made {made} reports"
                 + (f" ({self.result.failed} crashes failed)" if self.result.failed else ""))
        self.result.days = _rollupDays(generator.start, now)
        await self._rollUp()
        await self._showTopCrashers(now.date() + DAY)
        await self._showExplosive(now.date() - DAY)
        await self._showPartitions(existing)
        self.result.seconds = time.monotonic() - started
        self.out(f"done in {self.result.seconds:.1f}s; try `crashdb top-crashers --product "
                 "Firefox --version 17.0b3` or `crashdb partitions list`")
        return self.result

    # -- the collector --

    async def _collect(
        self, crashes: list[tuple[str, datetime.datetime, dict]], services: list[Any]
    ) -> None:
        """Store raw crashes (a few at a time), then queue their jobs, batch by batch."""
        semaphore = defer.DeferredSemaphore(COLLECTOR_CONCURRENCY)
        for start in range(0, len(crashes), COLLECTOR_BATCH):
            batch = crashes[start : start + COLLECTOR_BATCH]
            await defer.gatherResults(
                [semaphore.run(self.db.rawcrashes.addRawCrash, *crash) for crash in batch],
                consumeErrors=True,
            )
            await self.db.jobs.addJobs([uuid for uuid, _, _ in batch])
            self.result.collected += len(batch)
            for service in services:
                service.wakeUp()  # as a collector's notification would

    # -- the processors --

    async def _startProcessors(self) -> list[Any]:
        from crashdb.service import ProcessorService

        services = []
        for number in range(1, self.processors + 1):
            name = f"demo-processor-{number}"
            # (a demo killed earlier may have left claims under this name: the service's start
            # releases them)
            service = ProcessorService(self.db, name, self._processor(name), batchSize=10,
                                       concurrency=PROCESSOR_CONCURRENCY, clock=self.reactor)
            await service.startService()
            services.append(service)
        return services

    def _processor(self, name: str) -> Callable[[dict[str, Any]], defer.Deferred]:
        def process(job: dict[str, Any]) -> defer.Deferred:
            return defer.ensureDeferred(self._process(name, job))

        return process

    async def _process(self, name: str, job: dict[str, Any]) -> None:
        """A processor's work on one job: raw crash in, report out."""
        uuid = job["uuid"]
        ours = uuid in self._ours
        try:
            try:
                day: datetime.datetime | None = dayOfUuid(uuid)
            except ValueError:
                day = None  # not a demo id: search every week
            raw = await self.db.rawcrashes.getRawCrash(uuid, day)
            if raw is None:
                raise CrashDBError(f"no raw crash for {uuid}")
            await self.db.reports.addReport(reportFromRawCrash(uuid, raw, name))
        except Exception:
            self.result.failed += ours
            raise
        finally:
            if ours:
                self.result.processed += 1
                if self._progress is not None:
                    self._progress.update(self.result.processed)

    async def _waitForJobs(self) -> None:
        """Until none of this run's jobs is left incomplete; CrashDBError if processing stalls
        (say, a job held by a processor elsewhere that died and was never expired)."""
        seen, lastChange = -1, time.monotonic()
        while True:
            if self.result.processed >= len(self._ours):  # only then ask the database
                pending = await self.db.jobs.getJobs(complete=False)
                left = sum(job["uuid"] in self._ours for job in pending)
                if not left:
                    return
            else:
                left = len(self._ours) - self.result.processed
            if self.result.processed != seen:
                seen, lastChange = self.result.processed, time.monotonic()
            elif time.monotonic() - lastChange > STALL_SECONDS:
                raise CrashDBError(f"processing stalled: {left} jobs of this run left incomplete")
            await task.deferLater(self.reactor, POLL_SECONDS, lambda: None)

    # -- the rollup and the report --

    async def _rollUp(self) -> None:
        with Progress("rolling up top crashers", total=len(self.result.days),
                      stream=self.progress_stream) as progress:
            for day in self.result.days:
                self.result.rolled_up += await self.db.tcbs.updateTcbs(day)
                progress.advance()
        self.out(f"rolled up {len(self.result.days)} days into {self.result.rolled_up} "
                 "top-crasher rows")

    async def _showTopCrashers(self, end: datetime.date) -> None:
        from crashdb.scripts.top_crashers import formatTable, periodTitle

        start = end - 7 * DAY
        for product, version, limit in (("Firefox", None, 10), ("Firefox", "17.0b3", 5),
                                        ("Thunderbird", None, 5)):
            crashers = await self.db.tcbs.getTopCrashers(
                product, version=version, start_day=start, end_day=end, limit=limit
            )
            table = formatTable(crashers, periodTitle(product, version, start, end))
            self.result.tables.append(table)
            self.out("")
            self.out(table)

    async def _showExplosive(self, day: datetime.date) -> None:
        """Feed the usage of every rolled-up day, then list what exploded on ``day``."""
        from crashdb.scripts.explosive import formatTable, title

        usage = dailyUsers(self.crashes, self.result.days)
        await self.db.crashrates.addAdu(usage)
        self.result.explosive = await self.db.crashrates.getExplosive("Firefox", day, limit=5)
        table = formatTable(self.result.explosive, title("Firefox", None, day, per_adu=True))
        self.result.tables.append(table)
        self.out("")
        self.out(f"fed {len(usage)} ADU rows (active daily users per product version and day)")
        self.out(table)

    async def _showPartitions(self, existing: set[str]) -> None:
        parts = await self.db.partitions.getPartitions()
        self.result.partitions = parts
        self.result.created = sorted(p["name"] for p in parts if p["name"] not in existing)
        weeks: dict[datetime.datetime, list[str]] = {}
        for part in parts:
            weeks.setdefault(part["start"], []).append(part["name"])
        self.out("")
        self.out(f"weekly partitions: {len(self.result.created)} created by this run, "
                 f"{len(parts) - len(self.result.created)} there before")
        for monday in sorted(weeks):
            reports = await self.db.reports.countReports(start=monday, end=monday + WEEK)
            names = weeks[monday]
            new = "created" if all(n in self.result.created for n in names) else "existed"
            tables = ",".join(n.rsplit("_", 1)[0] for n in names)
            self.out(f"  week of {monday:%Y-%m-%d}  {new:<8} {reports:>6} reports  "
                     f"{{{tables}}}_{monday:%Y%m%d}")


async def runDemo(
    reactor: Any,
    db_url: str | None = None,
    crashes: int = DEFAULT_CRASHES,
    processors: int = DEFAULT_PROCESSORS,
    seed: int | None = None,
    out: Callable[[str], Any] = _printLine,
    progress_stream: Any = None,
) -> DemoResult:
    """Play the demo against the database at ``db_url`` (default: the embedded SQLite file)."""
    from crashdb.connector import DBConnector

    db = DBConnector(db_url, reactor=reactor)
    try:
        return await Demo(reactor, db, crashes, processors, seed, out, progress_stream).run()
    finally:
        await db.stop()
