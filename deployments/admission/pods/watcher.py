"""The worker pods of one RayCluster, kept current through the Kubernetes API (list, then watch).

:class:`WorkerPods` owns the Kubernetes client, the list + watch thread and the ``{pod name:
V1Pod}`` cache, and answers :meth:`WorkerPods.eta` from it; :meth:`WorkerPods.from_environment`
builds one on the head pod and returns None anywhere else, without creating a client. The head
pod's service account needs ``list`` and ``watch`` on ``pods`` in its namespace (the Helm chart's
Role, ``rbac.create``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import kubernetes

from deployments.admission.pods.classify import PodStart
from deployments.admission.pods.eta import pod_eta, pod_starts
from deployments.admission.pods.kuberay import CLUSTER_NAME_ENV, SERVICE_ACCOUNT_DIR, label_selector
from deployments.admission.pods.phases import DEFAULT_ESTIMATES, StartEstimates

logger = logging.getLogger("ray.serve")


def _shutdown(response: Any) -> None:
    """Shut down the socket of a watch response so that the read blocked on it returns.

    ``Watch.stop()`` shuts the socket through ``response.connection.sock``, which ``http.client``
    has already dropped when the server (or a proxy) answered ``Connection: close``; urllib3's
    ``HTTPResponse.shutdown()`` (urllib3 >= 2.3) keeps its own reference and works in both cases.
    """
    shutdown = getattr(response, "shutdown", None)
    if shutdown is not None:
        try:
            shutdown()
        except (OSError, RuntimeError, ValueError):  # already closed or released
            pass


class WorkerPods:
    """The worker pods of one RayCluster, kept current by a list + watch in a daemon thread.

    The thread lists the pods (``GET /api/v1/namespaces/<ns>/pods?labelSelector=...``), then
    watches from the list's ``resourceVersion`` (``watch=true``, ``timeoutSeconds`` =
    ``watch_timeout_s``, bookmarks allowed) and applies ADDED / MODIFIED / DELETED events to a
    ``{pod name: V1Pod}`` map. A watch that ends (its timeout) resumes from the last
    ``resourceVersion`` seen; a 410 Gone (that version was compacted away) re-lists at once; any
    other error re-lists after a backoff (doubling from ``backoff_s[0]`` to ``backoff_s[1]``
    seconds). Between an error and the next successful list the map is stale, and :meth:`eta`
    answers ``(None, None)`` rather than report pods that may have moved on.

    Needs ``list`` and ``watch`` on ``pods`` in ``namespace`` (the chart's Role).

    Args:
        api_client: a ``kubernetes.client.ApiClient`` (its configuration holds the API server's
            address and credentials). Closed by :meth:`close` only when
            :meth:`from_environment` created it.
        namespace: the RayCluster's namespace.
        cluster_name: the RayCluster's ``metadata.name`` (the ``ray.io/cluster`` label).
        watch_timeout_s: server-side timeout of one watch request, seconds; the client's read
            timeout is 30 s longer.
        backoff_s: (first, longest) wait after an error, seconds.
        estimates: the phase durations :meth:`eta` uses.
        start: start the thread now (else call :meth:`start`).
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        cluster_name: str,
        *,
        watch_timeout_s: int = 240,
        backoff_s: tuple[float, float] = (1.0, 30.0),
        estimates: StartEstimates = DEFAULT_ESTIMATES,
        start: bool = True,
    ):
        self.namespace = namespace
        self.cluster_name = cluster_name
        self.label_selector = label_selector(cluster_name)
        self.watch_timeout_s = int(watch_timeout_s)
        self.backoff_s = (float(backoff_s[0]), float(backoff_s[1]))
        self.estimates = estimates
        self._api_client = api_client
        self._api = kubernetes.client.CoreV1Api(api_client)
        self._owns_client = False
        self._started = False
        self._lock = threading.Lock()
        self._pods: dict[str, Any] = {}
        self._fresh = False
        self._listed = threading.Event()
        self._stop = threading.Event()
        self._watch: kubernetes.watch.Watch | None = None
        self._last_error: str | None = None
        self.lists = 0
        """Successful lists so far: the first one, then one after each 410 Gone or error."""
        self._thread = threading.Thread(target=self._run, name=f"worker-pods-{cluster_name}", daemon=True)
        if start:
            self.start()

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        service_account_dir: str | os.PathLike = SERVICE_ACCOUNT_DIR,
        **options: Any,
    ) -> WorkerPods | None:
        """A started watcher for the RayCluster this process runs in, or None off Kubernetes.

        On Kubernetes means: ``KUBERNETES_SERVICE_HOST`` / ``KUBERNETES_SERVICE_PORT`` set (the
        kubelet sets them in every container), the service-account ``token``, ``ca.crt`` and
        ``namespace`` files under ``service_account_dir`` (automounted unless the pod opts out),
        and ``RAY_CLUSTER_NAME`` (KubeRay sets it in the Ray container). If any is missing it
        returns None without creating a Kubernetes client. Otherwise the credentials are loaded
        the way ``kubernetes.config.load_incluster_config()`` loads them (its
        ``InClusterConfigLoader``, token refresh included) into a configuration of this watcher
        alone, and the namespace is the one in the ``namespace`` file.

        Args:
            environ: the environment (default ``os.environ``).
            service_account_dir: the service-account mount (default
                ``/var/run/secrets/kubernetes.io/serviceaccount``).
            options: keyword arguments of the constructor (``watch_timeout_s``...).
        """
        env = os.environ if environ is None else environ
        if not env.get("KUBERNETES_SERVICE_HOST") or not env.get("KUBERNETES_SERVICE_PORT"):
            return None
        sa = Path(service_account_dir)
        token, cert, ns_file = sa / "token", sa / "ca.crt", sa / "namespace"
        if not (token.is_file() and cert.is_file() and ns_file.is_file()):
            logger.info("worker pods: no service-account token under %s, pod-based ETAs are off", sa)
            return None
        cluster = (env.get(CLUSTER_NAME_ENV) or "").strip()
        namespace = ns_file.read_text().strip()
        if not cluster or not namespace:
            logger.warning("worker pods: %s or the namespace is not known, pod-based ETAs are off", CLUSTER_NAME_ENV)
            return None
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.incluster_config.InClusterConfigLoader(
                token_filename=str(token), cert_filename=str(cert), environ=env
            ).load_and_set(configuration)
        except kubernetes.config.ConfigException as exc:
            logger.warning("worker pods: in-cluster configuration failed (%s), pod-based ETAs are off", exc)
            return None
        watcher = cls(kubernetes.client.ApiClient(configuration), namespace, cluster, **options)
        watcher._owns_client = True
        return watcher

    # ---------------------------------------------------------------- reading

    def snapshot(self) -> dict[str, Any]:
        """``{pod name: kubernetes.client.V1Pod}`` as last seen (a copy; empty before the first
        list)."""
        with self._lock:
            return dict(self._pods)

    @property
    def synced(self) -> bool:
        """True while the map is current: the last list succeeded and no error came since."""
        with self._lock:
            return self._fresh

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the first list succeeded; returns :attr:`synced`."""
        self._listed.wait(timeout)
        return self.synced

    @property
    def last_error(self) -> str | None:
        """The last list or watch error (``"410 Gone"``, ``"403 Forbidden"``...), None if none."""
        with self._lock:
            return self._last_error

    def starts(self, now: float | None = None) -> list[PodStart]:
        """:func:`pod_starts` of the current pods (empty while not :attr:`synced`)."""
        with self._lock:
            pods = list(self._pods.values()) if self._fresh else []
        return pod_starts(pods, now, self.estimates)

    def eta(self, now: float | None = None, groups: Iterable[str] | None = None) -> tuple[float | None, str | None]:
        """:func:`pod_eta` of the current pods: ``(seconds until the worker pods now starting
        are Ready, their worker group)``; ``(None, None)`` when none is starting or while not
        :attr:`synced`. ``now``: epoch seconds (default ``time.time()``)."""
        with self._lock:
            if not self._fresh:
                return None, None
            pods = list(self._pods.values())
        return pod_eta(pods, now, groups, self.estimates)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the list/watch thread (once; a no-op after :meth:`close`)."""
        if not self._started and not self._stop.is_set():
            self._started = True
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (an open watch is cut: its socket is shut down) and wait up to
        ``timeout`` seconds for it; close the API client if this watcher created it."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            w = self._watch
            if w is not None:  # repeated: a watch may connect after the first stop()
                w.stop()
                _shutdown(getattr(w, "_resp", None))
            self._thread.join(0.05)
        if self._owns_client:
            self._api_client.close()

    def __enter__(self) -> WorkerPods:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._stop.is_set():
            try:
                version = self._list()
                delay = self.backoff_s[0]
                while not self._stop.is_set():
                    began = time.monotonic()
                    version = self._watch_once(version)
                    if time.monotonic() - began < 1.0:  # a watch cut at once (a proxy?): do not spin
                        self._stop.wait(self.backoff_s[0])
            except kubernetes.client.ApiException as exc:
                self._failed(f"{exc.status} {exc.reason}", gone=exc.status == 410)
                if exc.status == 410:  # the version is gone: re-list at once
                    continue
            except Exception as exc:  # connection refused, timeouts, bad responses
                if self._stop.is_set():
                    break
                self._failed(f"{type(exc).__name__}: {exc}")
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.backoff_s[1])

    def _failed(self, error: str, gone: bool = False) -> None:
        with self._lock:
            repeated = error == self._last_error
            self._fresh = False
            self._last_error = error
        if not self._stop.is_set():
            # 410 Gone is routine (etcd compaction); the same error again (no RBAC...) is logged once
            level = logging.INFO if gone else logging.DEBUG if repeated else logging.WARNING
            logger.log(level, "worker pods of %s/%s: %s; re-listing", self.namespace, self.cluster_name, error)

    def _list(self) -> str | None:
        result = self._api.list_namespaced_pod(
            self.namespace, label_selector=self.label_selector, _request_timeout=(10, 60)
        )
        pods = {p.metadata.name: p for p in result.items or [] if p.metadata is not None and p.metadata.name}
        with self._lock:
            self._pods = pods
            self._fresh = True
            self.lists += 1
        self._listed.set()
        return result.metadata.resource_version if result.metadata is not None else None

    def _watch_once(self, version: str | None) -> str | None:
        """One watch request from ``version``; returns the last version seen."""
        w = kubernetes.watch.Watch()
        self._watch = w
        try:
            if self._stop.is_set():
                return version
            for event in w.stream(
                self._api.list_namespaced_pod,
                self.namespace,
                label_selector=self.label_selector,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.watch_timeout_s,
                _request_timeout=(10, self.watch_timeout_s + 30),
            ):
                kind, pod = event.get("type"), event.get("object")
                if kind in ("ADDED", "MODIFIED", "DELETED") and pod is not None and pod.metadata is not None:
                    with self._lock:
                        if kind == "DELETED":
                            self._pods.pop(pod.metadata.name, None)
                        else:
                            self._pods[pod.metadata.name] = pod
                if self._stop.is_set():
                    break
            return w.resource_version or version
        finally:
            self._watch = None
