"""The demo's made-up crashes: products, versions, signatures, add-ons, and the collector's
raw crashes, realistic enough that the rollups show something true."""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import itertools
import math
import random
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any

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
# An add-on installed in most crashes of the regression and rarely elsewhere: the demo's
# correlations find it. (id, version, share of the regression's crashes, share of the others')
PLANTED_ADDON = ("websocket-turbo@example.org", "0.9.1", 0.7, 0.01)
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
            addons += _plantedAddon(rng, signature)
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


def _plantedAddon(rng: random.Random, signature: str) -> list[str]:
    """The planted add-on (as an ``Add-ons`` entry) if this crash has it, else nothing."""
    addon_id, addon_version, with_regression, elsewhere = PLANTED_ADDON
    share = with_regression if signature == REGRESSION[0] else elsewhere
    return [f"{addon_id}:{addon_version}"] if rng.random() < share else []


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
