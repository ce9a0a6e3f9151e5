"""Point the HTTP benchmarks at a user's own service instead of the built-in one.

Why: the load benchmarks were written against the Starlette app they start themselves
(``forgebench.service.app``). A user wants the same numbers for their own server. With
``target_url`` set in a benchmark's section, the benchmark starts nothing and drives that
URL; the user names the paths to request (``target_paths``, default ``["/"]``).

What changes for a foreign service, and why:

* **Answers are not verified.** The built-in endpoints carry digests the client checks;
  a foreign service's answers cannot be checked, so a request is ok when it returns a 2xx
  answer within ``timeout_s``. Every row says so in its params (``"target": "external"``,
  ``"ok_when": "2xx within timeout_s"``, the URL).
* **Its process is not ours.** Memory and CPU of the server are recorded as
  ``unavailable`` rather than guessed; the generator's own CPU is still measured.
* **Loopback only, unless said otherwise.** A load test aimed at the wrong host is an
  attack on someone else's server, and this project's tests must only reach loopback; a
  host that is not a loopback address (127.0.0.0/8, ::1, ``localhost``) is refused unless
  ``allow_remote_target: true``. Names other than ``localhost`` are not resolved to decide
  this (a DNS query is traffic too).
* **Built-in-only settings are refused**, not silently ignored: ``faults`` (injected by
  the built-in app) and ``target_paths`` without ``target_url``.

Everything is checked before the first request, and every message names the key.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl as ssl_lib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from forgebench.errors import ForgebenchError
from forgebench.service.loadgen import HttpRequest, Limits, closed_loop, run_async
from forgebench.service.server import ServiceAddress

#: Paths requested from a foreign service when ``target_paths`` is not given.
DEFAULT_PATHS = ("/",)
#: How a request to a foreign service is judged (also in every row's params).
OK_WHEN = "2xx within timeout_s"
_PATH_RE = re.compile(r"^/[\x21-\x7e]*$")  # visible ASCII, no spaces or control bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExternalTarget:
    """A checked ``target_url`` and the paths to request from it."""

    url: str  # as configured, without a trailing slash
    scheme: str
    host: str
    port: int
    base_path: str
    host_header: str
    paths: tuple[str, ...]

    def address(self) -> ServiceAddress:
        """Where the load generator connects (no pid: the process is not ours)."""
        tls = ssl_lib.create_default_context() if self.scheme == "https" else None
        return ServiceAddress(
            self.host,
            self.port,
            None,
            scheme=self.scheme,
            base_path=self.base_path,
            host_header=self.host_header,
            ssl=tls,
        )

    def params(self) -> dict[str, Any]:
        """What every row of a foreign target carries in its params."""
        return {"target": "external", "url": self.url, "ok_when": OK_WHEN}

    def requests(self) -> list[HttpRequest]:
        """One GET per path, without an expected body (only the status is judged)."""
        return [HttpRequest("GET", self.base_path + p, name=p) for p in self.paths]


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped) and the name ``localhost``."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def check_paths(paths: Any, key: str) -> tuple[str, ...]:
    """``paths`` as a tuple of request targets, or ForgebenchError naming ``key``."""
    if isinstance(paths, str) or not isinstance(paths, Sequence) or not paths:
        raise ForgebenchError(
            f"{key}: give a non-empty list of paths such as ['/health', '/items?id=1'], "
            f"got {paths!r}"
        )
    out = []
    for p in paths:
        if not isinstance(p, str) or not _PATH_RE.match(p) or "#" in p:
            raise ForgebenchError(
                f"{key}: {p!r} is not a request path; each must start with '/' and hold no "
                "spaces, control characters or '#' (percent-encode them), e.g. '/items?id=1'"
            )
        out.append(p)
    if len(set(out)) != len(out):
        raise ForgebenchError(f"{key}: paths must be distinct, got {out}")
    return tuple(out)


def parse_target_url(url: Any, key: str, *, allow_remote: bool) -> ExternalTarget:
    """Check a target URL (scheme, host, port, loopback); paths are added by the caller."""
    if not isinstance(url, str) or not url.strip():
        raise ForgebenchError(f"{key}: give a URL such as http://127.0.0.1:8000, got {url!r}")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ForgebenchError(
            f"{key}: {url!r} has scheme {parts.scheme or '(none)'!r}; the load generator "
            "speaks HTTP/1.1, so use http:// or https://, e.g. http://127.0.0.1:8000"
        )
    if parts.username is not None or parts.password is not None:
        raise ForgebenchError(
            f"{key}: credentials in the URL are not supported (they would be stored in every "
            "row's params); give a URL without user:password@"
        )
    host = parts.hostname
    if not host:
        raise ForgebenchError(f"{key}: {url!r} names no host; e.g. http://127.0.0.1:8000")
    try:
        port = parts.port
    except ValueError:
        raise ForgebenchError(f"{key}: {url!r} has an invalid port; use 1-65535") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise ForgebenchError(f"{key}: {url!r} has port {port}; use 1-65535")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ForgebenchError(
            f"{key}: {url!r} has a query or fragment; put queries in target_paths "
            "(e.g. ['/items?id=1']) and give the URL as scheme://host:port[/prefix]"
        )
    if not allow_remote and not is_loopback_host(host):
        raise ForgebenchError(
            f"{key}: host {host!r} is not a loopback address (127.0.0.1, ::1 or localhost). "
            "forgebench only loads loopback by default: a load test pointed at the wrong host "
            "hits someone else's server, and the project's tests must only reach this "
            "machine. To load a server of your own elsewhere, set allow_remote_target: true "
            "in the same section."
        )
    base_path = parts.path.rstrip("/")
    if base_path and not _PATH_RE.match(base_path):
        raise ForgebenchError(f"{key}: the path of {url!r} holds spaces or control characters")
    return ExternalTarget(
        url=f"{scheme}://{parts.netloc}{base_path}",
        scheme=scheme,
        host=host,
        port=port,
        base_path=base_path,
        host_header=parts.netloc,
        paths=DEFAULT_PATHS,
    )


def external_target(
    cfg: Mapping[str, Any], key: str, *, paths: Sequence[str] | None = None
) -> ExternalTarget | None:
    """The checked foreign target of a benchmark section, or None for the built-in app.

    ``key`` is the section's dotted path (messages name ``<key>.target_url`` etc.).
    ``paths`` overrides ``target_paths`` for a benchmark that has its own path key
    (wrk_compare's ``path``).
    """
    url = cfg.get("target_url")
    given_paths = cfg.get("target_paths")
    if url is None or (isinstance(url, str) and not url.strip()):
        if given_paths is not None:
            raise ForgebenchError(
                f"{key}.target_paths: only used with {key}.target_url (a service of your "
                "own); the built-in service is loaded through its named endpoints, whose "
                "answers it checks. Set target_url or remove target_paths."
            )
        return None
    target = parse_target_url(
        url, f"{key}.target_url", allow_remote=bool(cfg.get("allow_remote_target", False))
    )
    if cfg.get("faults"):
        raise ForgebenchError(
            f"{key}.faults: fault injection is done by the built-in service and cannot be "
            f"applied to {target.url}; remove faults or target_url"
        )
    if paths is None:
        paths = check_paths(
            DEFAULT_PATHS if given_paths is None else given_paths, f"{key}.target_paths"
        )
    else:
        paths = check_paths(paths, f"{key}.path")
    return replace(target, paths=tuple(paths))


def case_slug(path: str) -> str:
    """A case-name fragment for a request path: ``/items?id=1`` -> ``items_id_1``."""
    slug = re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")
    return slug or "root"


def case_names(paths: Sequence[str]) -> list[str]:
    """Distinct case-name fragments for ``paths``, in order (a clash gets ``_<index>``)."""
    out: list[str] = []
    for i, p in enumerate(paths):
        slug = case_slug(p)
        out.append(slug if slug not in out else f"{slug}_{i}")
    return out


def probe(addr: ServiceAddress, request: HttpRequest, timeout_s: float) -> str:
    """One request before measuring: its status (``ok`` or the failure), for the log only."""
    limits = Limits(0.0, 1, timeout_s + 1.0, timeout_s)
    res = run_async(closed_loop(addr.host, addr.port, [request], 1, limits,
                                **addr.client_options()))  # fmt: skip
    return res.status[0] if res.n else "error:NoRequests"


def announce(target: ExternalTarget, addr: ServiceAddress, timeout_s: float, key: str) -> None:
    """Log what is loaded and whether it answers now; a dead target is failed rows, later."""
    first = target.requests()[0]
    status = probe(addr, first, timeout_s)
    level = logging.INFO if status == "ok" else logging.WARNING
    log.log(
        level,
        "%s: loading %s (paths %s; ok = %s; server memory/CPU not measured); "
        "GET %s answered: %s",
        key, target.url, list(target.paths), OK_WHEN, first.path, status,
    )  # fmt: skip
