"""Pod-based start ETAs (deployments/admission/pods/): the RayCluster's worker pods as the
Kubernetes API reports them, turned into seconds until Ready.

Classification and ETAs are checked on real ``kubernetes.client`` model objects (``V1Pod``,
``V1PodStatus``, ``V1PodCondition``, ``V1ContainerStatus``...) filled with the phases, conditions
and container states the API server reports for each step of a worker pod's start: Pending and
Unschedulable while a node is provisioned, ContainerCreating / ErrImagePull / ImagePullBackOff /
PodInitializing on its node, Running but not Ready while Ray starts, Running and Ready.

The watcher (:class:`WorkerPods`) runs the real ``kubernetes`` client (``CoreV1Api``,
``kubernetes.watch.Watch``, ``ApiClient`` deserialisation) against a local HTTP server that
answers the two requests it makes: ``GET /api/v1/namespaces/<ns>/pods?labelSelector=...`` (a
PodList with ``metadata.resourceVersion``) and the same with ``watch=true`` (chunked,
newline-delimited watch events, ``ERROR`` 410 for a compacted resourceVersion). A real API server
cannot run on these machines (no Kubernetes API server can be had here: see ../shared/NOTES.md),
which is why this server stands in for one; it keeps only what the watcher depends on: label
selectors with equality terms, resource versions, watch timeouts, 410 Gone. No Ray is started.
"""

from __future__ import annotations

import datetime as dt
import gc
import ipaddress
import json
import os
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from deployments.admission.pods.classify import classify_pod, pod_start
from deployments.admission.pods.eta import pod_eta, pod_starts
from deployments.admission.pods.kuberay import label_selector
from deployments.admission.pods.phases import (
    DEFAULT_ESTIMATES,
    IMAGE_PULL_S,
    MIN_PHASE_REMAINING_S,
    NODE_PROVISIONING_S,
    RAY_START_S,
    SCHEDULING_S,
    StartEstimates,
    StartPhase,
)
from deployments.admission.pods.watcher import WorkerPods

NAMESPACE = "omniserve"
CLUSTER = "omniserve-x7k2p"  # a RayService's RayCluster: <rayservice>-<5 random characters>
IMAGE = "ghcr.io/omniserve/omniserve-gpu:0.1.0"
T0 = dt.datetime(2026, 12, 7, 12, 0, 0, tzinfo=dt.timezone.utc)
EPOCH0 = T0.timestamp()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# ------------------------------------------------------------------------------------------
# Pods as the API server reports them
# ------------------------------------------------------------------------------------------


def ray_pod(
    name: str,
    status: client.V1PodStatus | None,
    group: str = "gpu",
    cluster: str = CLUSTER,
    node_type: str = "worker",
    created: float = 0.0,
    node: str | None = None,
    deleted: float | None = None,
) -> client.V1Pod:
    """A Ray pod with the labels KubeRay puts on it."""
    return client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=NAMESPACE,
            uid=f"uid-{name}",
            labels={
                "ray.io/cluster": cluster,
                "ray.io/node-type": node_type,
                "ray.io/group": group if node_type == "worker" else "headgroup",
                "ray.io/is-ray-node": "yes",
                "app.kubernetes.io/name": "kuberay",
                "app.kubernetes.io/created-by": "kuberay-operator",
            },
            creation_timestamp=at(created),
            deletion_timestamp=None if deleted is None else at(deleted),
            deletion_grace_period_seconds=None if deleted is None else 30,
        ),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name=f"ray-{node_type}", image=IMAGE)],
            node_name=node,
        ),
        status=status,
    )


def cond(kind: str, status: str, t: float, reason: str | None = None, message: str | None = None):
    return client.V1PodCondition(
        type=kind, status=status, reason=reason, message=message, last_transition_time=at(t), last_probe_time=None
    )


def container(name: str = "ray-worker", ready: bool = False, **state) -> client.V1ContainerStatus:
    return client.V1ContainerStatus(
        name=name,
        image=IMAGE,
        image_id="" if "waiting" in state else "ghcr.io/omniserve/omniserve-gpu@sha256:" + "ab" * 32,
        ready=ready,
        restart_count=0,
        started="running" in state,
        state=client.V1ContainerState(**state),
    )


def unschedulable(t: float = 0.0) -> client.V1PodStatus:
    return client.V1PodStatus(
        phase="Pending",
        qos_class="Guaranteed",
        conditions=[
            cond(
                "PodScheduled",
                "False",
                t,
                "Unschedulable",
                "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
                "2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No preemption victims found "
                "for incoming pod.",
            )
        ],
    )


def just_created() -> client.V1PodStatus:
    return client.V1PodStatus(phase="Pending", qos_class="Guaranteed")


def _on_node(scheduled: float, ready_reason: str = "ContainersNotReady", initialized: bool = True) -> list:
    return [
        cond("PodReadyToStartContainers", "False", scheduled),
        cond(
            "Initialized",
            "True" if initialized else "False",
            scheduled,
            None if initialized else "ContainersNotInitialized",
        ),
        cond("Ready", "False", scheduled, ready_reason, "containers with unready status: [ray-worker]"),
        cond("ContainersReady", "False", scheduled, ready_reason, "containers with unready status: [ray-worker]"),
        cond("PodScheduled", "True", scheduled),
    ]


def creating(scheduled: float, reason: str = "ContainerCreating", message: str | None = None) -> client.V1PodStatus:
    return client.V1PodStatus(
        phase="Pending",
        qos_class="Guaranteed",
        host_ip="10.0.3.17",
        start_time=at(scheduled + 1),
        conditions=_on_node(scheduled),
        container_statuses=[container(waiting=client.V1ContainerStateWaiting(reason=reason, message=message))],
    )


def initializing(scheduled: float) -> client.V1PodStatus:
    """KubeRay's wait-gcs-ready init container running, the Ray container PodInitializing."""
    return client.V1PodStatus(
        phase="Pending",
        qos_class="Guaranteed",
        host_ip="10.0.3.17",
        start_time=at(scheduled + 1),
        conditions=_on_node(scheduled, initialized=False),
        init_container_statuses=[
            container("wait-gcs-ready", running=client.V1ContainerStateRunning(started_at=at(scheduled + 40)))
        ],
        container_statuses=[container(waiting=client.V1ContainerStateWaiting(reason="PodInitializing"))],
    )


def running(scheduled: float, started: float, ready: bool) -> client.V1PodStatus:
    conditions = [
        cond("PodReadyToStartContainers", "True", started),
        cond("Initialized", "True", started),
        cond("Ready", "True", started + 15) if ready else cond("Ready", "False", scheduled, "ContainersNotReady"),
        cond("ContainersReady", "True", started + 15)
        if ready
        else cond("ContainersReady", "False", scheduled, "ContainersNotReady"),
        cond("PodScheduled", "True", scheduled),
    ]
    return client.V1PodStatus(
        phase="Running",
        qos_class="Guaranteed",
        host_ip="10.0.3.17",
        pod_ip="10.4.1.23",
        start_time=at(scheduled + 1),
        conditions=conditions,
        container_statuses=[container(ready=ready, running=client.V1ContainerStateRunning(started_at=at(started)))],
    )


def evicted() -> client.V1PodStatus:
    return client.V1PodStatus(
        phase="Failed", reason="Evicted", message="The node was low on resource: memory.", qos_class="Guaranteed"
    )


PULL_MESSAGE = (
    f'Failed to pull image "{IMAGE}": rpc error: code = Unknown desc = failed to pull and unpack image '
    f'"{IMAGE}": failed to resolve reference "{IMAGE}": unexpected status from HEAD request: 401 Unauthorized'
)

# ------------------------------------------------------------------------------------------
# Classification and ETA of one pod
# ------------------------------------------------------------------------------------------

PHASES = {
    "Pending, Unschedulable": (lambda: ray_pod("w", unschedulable()), StartPhase.UNSCHEDULABLE, "Unschedulable"),
    "Pending, just created": (lambda: ray_pod("w", just_created()), StartPhase.SCHEDULING, None),
    "Pending, no status yet": (lambda: ray_pod("w", None), StartPhase.SCHEDULING, None),
    "ContainerCreating": (
        lambda: ray_pod("w", creating(300), node="gke-gpu-1"),
        StartPhase.PULLING_IMAGE,
        "ContainerCreating",
    ),
    "ErrImagePull": (
        lambda: ray_pod("w", creating(300, "ErrImagePull", PULL_MESSAGE), node="gke-gpu-1"),
        StartPhase.PULLING_IMAGE,
        "ErrImagePull",
    ),
    "ImagePullBackOff": (
        lambda: ray_pod("w", creating(300, "ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'), node="n1"),
        StartPhase.PULLING_IMAGE,
        "ImagePullBackOff",
    ),
    "init container running": (
        lambda: ray_pod("w", initializing(300), node="n1"),
        StartPhase.PULLING_IMAGE,
        "PodInitializing",
    ),
    "Running, not Ready": (
        lambda: ray_pod("w", running(300, 380, ready=False), node="n1"),
        StartPhase.STARTING,
        "ContainersNotReady",
    ),
    "Running, Ready": (lambda: ray_pod("w", running(300, 380, ready=True), node="n1"), StartPhase.READY, None),
    "Failed (evicted)": (lambda: ray_pod("w", evicted(), node="n1"), StartPhase.FAILED, "Evicted"),
    "Succeeded": (lambda: ray_pod("w", client.V1PodStatus(phase="Succeeded")), StartPhase.FAILED, "Succeeded"),
    "Unknown (node lost)": (lambda: ray_pod("w", client.V1PodStatus(phase="Unknown")), StartPhase.FAILED, "Unknown"),
    "terminating": (
        lambda: ray_pod("w", running(300, 380, ready=True), node="n1", deleted=900),
        StartPhase.TERMINATING,
        None,
    ),
}


@pytest.mark.parametrize("case", list(PHASES))
def test_classify_real_pod_states(case):
    build, phase, reason = PHASES[case]
    pod = build()
    assert classify_pod(pod) is phase
    start = pod_start(pod, now=EPOCH0 + 400)
    assert (start.name, start.group, start.phase, start.reason) == ("w", "gpu", phase, reason)
    if phase in (StartPhase.READY, StartPhase.FAILED, StartPhase.TERMINATING):
        assert start.eta_s is None
    else:
        assert start.eta_s is not None and start.eta_s >= MIN_PHASE_REMAINING_S


def test_a_pod_deserialised_from_api_json_classifies_the_same():
    """What the watcher sees: the API's camelCase JSON through ApiClient.deserialize."""
    api = client.ApiClient()
    for case, (build, phase, reason) in PHASES.items():
        wire = json.dumps(api.sanitize_for_serialization(build()))
        pod = api.deserialize(wire, "V1Pod", "application/json")
        assert isinstance(pod, client.V1Pod)
        assert (classify_pod(pod), pod_start(pod, EPOCH0 + 400).reason) == (phase, reason), case


def test_each_phase_starts_from_its_documented_default():
    """A pod that has just entered a phase: its own default plus the later phases' in full."""
    assert (
        pod_start(ray_pod("w", unschedulable(0)), now=EPOCH0).eta_s == NODE_PROVISIONING_S + IMAGE_PULL_S + RAY_START_S
    )
    assert pod_start(ray_pod("w", just_created()), now=EPOCH0).eta_s == SCHEDULING_S + IMAGE_PULL_S + RAY_START_S
    assert pod_start(ray_pod("w", creating(300)), now=EPOCH0 + 300).eta_s == IMAGE_PULL_S + RAY_START_S
    assert pod_start(ray_pod("w", running(300, 380, False)), now=EPOCH0 + 380).eta_s == RAY_START_S
    # the documented order of magnitude: minutes for a node, a minute or two to pull, seconds to start
    assert 120 <= NODE_PROVISIONING_S <= 600 and 30 <= IMAGE_PULL_S <= 180 and 10 <= RAY_START_S <= 60


def test_elapsed_time_reduces_the_eta_never_below_the_floor():
    pod = ray_pod("w", unschedulable(0))
    etas = [pod_start(pod, now=EPOCH0 + s).eta_s for s in (0, 60, 200, 235, 600, 3600)]
    assert etas[0] > etas[1] > etas[2] > etas[3]
    assert etas[1] == NODE_PROVISIONING_S - 60 + IMAGE_PULL_S + RAY_START_S
    # a node that takes longer than the default: the rest of the start still lies ahead
    floor = MIN_PHASE_REMAINING_S + IMAGE_PULL_S + RAY_START_S
    assert etas[4] == etas[5] == floor

    pulling = ray_pod("w", creating(300, "ImagePullBackOff"))  # scheduled at +300 s
    assert pod_start(pulling, now=EPOCH0 + 330).eta_s == IMAGE_PULL_S - 30 + RAY_START_S
    assert pod_start(pulling, now=EPOCH0 + 5000).eta_s == MIN_PHASE_REMAINING_S + RAY_START_S
    assert pod_start(pulling, now=EPOCH0 + 330).since == EPOCH0 + 300  # PodScheduled's lastTransitionTime

    starting = ray_pod("w", running(300, 380, ready=False))  # Ray container started at +380 s
    assert pod_start(starting, now=EPOCH0 + 390).eta_s == RAY_START_S - 10
    assert pod_start(starting, now=EPOCH0 + 900).eta_s == MIN_PHASE_REMAINING_S
    # a clock behind the pod's timestamps does not raise the estimate above the default
    assert pod_start(starting, now=EPOCH0).eta_s == RAY_START_S


def test_estimates_can_be_replaced():
    measured = StartEstimates(node_provisioning_s=100, image_pull_s=30, ray_start_s=10, min_remaining_s=2)
    assert pod_start(ray_pod("w", unschedulable(0)), EPOCH0 + 40, measured).eta_s == 60 + 30 + 10
    assert measured.remaining_s(StartPhase.READY) is None
    assert DEFAULT_ESTIMATES.remaining_s(StartPhase.STARTING, 1e9) == MIN_PHASE_REMAINING_S


def test_pod_eta_combines_the_worker_pods():
    now = EPOCH0 + 330
    gpu_waiting = ray_pod("omniserve-x7k2p-gpu-worker-abcde", unschedulable(300), group="gpu", created=300)
    cpu_pulling = ray_pod("omniserve-x7k2p-cpu-worker-fghij", creating(310), group="cpu", created=300)
    cpu_ready = ray_pod("omniserve-x7k2p-cpu-worker-klmno", running(0, 20, ready=True), group="cpu")
    head = ray_pod("omniserve-x7k2p-head-pqrst", unschedulable(300), node_type="head", created=300)

    assert pod_eta([], now) == (None, None)
    assert pod_eta([cpu_ready], now) == (None, None)  # ready pods give no ETA
    assert pod_eta([ray_pod("w", evicted())], now) == (None, None)
    # the session waits for the slowest pod being started; its group is the provider
    eta, provider = pod_eta([cpu_ready, cpu_pulling, gpu_waiting, head], now)
    assert provider == "gpu"
    assert eta == NODE_PROVISIONING_S - 30 + IMAGE_PULL_S + RAY_START_S
    # only the groups asked for
    assert pod_eta([cpu_ready, cpu_pulling, gpu_waiting], now, groups=["cpu"]) == (
        IMAGE_PULL_S - 20 + RAY_START_S,
        "cpu",
    )
    assert pod_eta([cpu_ready, gpu_waiting], now, groups=["cpu"]) == (None, None)
    # the head pod is not a worker: ignored even when it is the only pod
    assert pod_eta([head], now) == (None, None)
    # as the GPU pod moves on, the ETA falls
    gpu_pulling = ray_pod(gpu_waiting.metadata.name, creating(540), group="gpu", created=300, node="gke-gpu-2")
    gpu_starting = ray_pod(gpu_waiting.metadata.name, running(540, 630, False), group="gpu", created=300, node="n")
    gpu_ready = ray_pod(gpu_waiting.metadata.name, running(540, 630, True), group="gpu", created=300, node="n")
    later = [
        pod_eta([gpu_waiting], EPOCH0 + 540)[0],
        pod_eta([gpu_pulling], EPOCH0 + 540)[0],
        pod_eta([gpu_starting], EPOCH0 + 630)[0],
    ]
    assert later == sorted(later, reverse=True) and len(set(later)) == 3
    assert pod_eta([gpu_ready], EPOCH0 + 650) == (None, None)
    starts = pod_starts([cpu_ready, cpu_pulling, gpu_waiting, head], now)
    assert [s.group for s in starts] == ["gpu", "cpu", "cpu"]  # longest first, ready last, head left out


# ------------------------------------------------------------------------------------------
# A local stand-in for the API server's pod list and watch
# ------------------------------------------------------------------------------------------


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


class FakeKubeApi:
    """``GET /api/v1/namespaces/<ns>/pods`` with ``labelSelector`` (equality terms), list and
    ``watch=true``, resource versions, ``timeoutSeconds``, and 410 Gone (an ERROR event, as the
    API server sends it) for a watch from a version older than :attr:`oldest`."""

    def __init__(self, namespace: str = NAMESPACE, tls: ssl.SSLContext | None = None, connection_close: bool = False):
        self.namespace = namespace
        self.connection_close = connection_close  # answer watches with "Connection: close" (as some proxies do)
        self.cond = threading.Condition()
        self.version = 1000
        self.objects: dict[str, dict] = {}
        self.events: list[tuple[int, dict]] = []
        self.oldest = 0  # watches from a resourceVersion below this get 410 Gone
        self.cut = 0  # bumping it ends every open watch
        self.failures: list[tuple[int, str]] = []  # (code, reason) answers of the next lists
        self.requests: list[dict] = []
        self.stopping = False
        self._serializer = client.ApiClient()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeKubeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- state changes

    def put(self, pod: client.V1Pod, record: bool = True) -> None:
        """Create or replace a pod (an ADDED or MODIFIED event unless ``record`` is false)."""
        obj = self._serializer.sanitize_for_serialization(pod)
        with self.cond:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            kind = "MODIFIED" if obj["metadata"]["name"] in self.objects else "ADDED"
            self.objects[obj["metadata"]["name"]] = obj
            if record:
                self.events.append((self.version, {"type": kind, "object": obj}))
            self.cond.notify_all()

    def delete(self, name: str) -> None:
        with self.cond:
            self.version += 1
            obj = self.objects.pop(name)
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, {"type": "DELETED", "object": obj}))
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget the event history (etcd compaction) and end the open watches: a watch resumed
        from an older version gets 410 Gone."""
        with self.cond:
            self.oldest = self.version
            self.cut += 1
            self.cond.notify_all()

    def requests_of(self, watch: bool) -> list[dict]:
        with self.cond:
            return [r for r in self.requests if (r["query"].get("watch") == "true") == watch]

    # -- the HTTP side

    @staticmethod
    def _matches(obj: dict, selector: dict[str, str]) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return all(labels.get(k) == v for k, v in selector.items())

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                with api.cond:
                    api.requests.append(
                        {"path": url.path, "query": query, "authorization": self.headers.get("Authorization")}
                    )
                if url.path != f"/api/v1/namespaces/{api.namespace}/pods":
                    return self._json(404, _status(404, "NotFound", f"the server could not find {url.path}"))
                selector = {}
                for term in filter(None, query.get("labelSelector", "").split(",")):
                    key, sep, value = term.partition("=")
                    if not sep or key.endswith("!"):
                        return self._json(400, _status(400, "BadRequest", f"unsupported selector term {term}"))
                    selector[key] = value.lstrip("=")
                if query.get("watch") == "true":
                    return self._watch(query, selector)
                with api.cond:
                    failure = api.failures.pop(0) if api.failures else None
                    items = [o for o in api.objects.values() if api._matches(o, selector)]
                    version = api.version
                if failure is not None:
                    return self._json(failure[0], _status(failure[0], failure[1], "injected failure"))
                self._json(
                    200,
                    {
                        "kind": "PodList",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(version)},
                        "items": items,
                    },
                )

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _watch(self, query: dict, selector: dict) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                if api.connection_close:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                since = int(query.get("resourceVersion") or 0)
                deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
                try:
                    with api.cond:
                        cut, gone = api.cut, since < api.oldest
                    if gone:
                        error = _status(410, "Expired", f"too old resource version: {since} ({api.oldest})")
                        self._chunk(json.dumps({"type": "ERROR", "object": error}).encode() + b"\n")
                    while not gone:
                        with api.cond:
                            api.cond.wait_for(
                                lambda since=since: (
                                    api.stopping or api.cut != cut or api.events and api.events[-1][0] > since
                                ),
                                timeout=max(0.0, deadline - time.monotonic()),
                            )
                            if api.stopping or api.cut != cut:
                                break
                            pending = [(v, e) for v, e in api.events if v > since]
                        if not pending and time.monotonic() >= deadline:
                            break
                        for version, event in pending:
                            since = version
                            if api._matches(event["object"], selector):
                                self._chunk(json.dumps(event).encode() + b"\n")
                    self._chunk(b"")  # the last chunk: the watch ends
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                    pass  # the client went away (WorkerPods.close shuts its socket)

        return Handler


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def api_client_for(server: FakeKubeApi) -> client.ApiClient:
    return client.ApiClient(client.Configuration(host=server.url))


def phase_of(watcher: WorkerPods, name: str) -> StartPhase | None:
    pod = watcher.snapshot().get(name)
    return None if pod is None else classify_pod(pod)


GPU_POD = f"{CLUSTER}-gpu-worker-abcde"
CPU_POD = f"{CLUSTER}-cpu-worker-fghij"


def test_watcher_follows_a_worker_pod_from_unschedulable_to_ready():
    with FakeKubeApi() as server:
        server.put(ray_pod(GPU_POD, unschedulable(0), group="gpu"))
        server.put(ray_pod(f"{CLUSTER}-head-zzzzz", running(0, 5, True), node_type="head"))  # not a worker
        server.put(ray_pod("other-abcde-gpu-worker-q", unschedulable(0), cluster="other-abcde"))  # another cluster
        with WorkerPods(api_client_for(server), NAMESPACE, CLUSTER, backoff_s=(0.05, 0.2)) as pods:
            assert pods.wait_synced(10)
            (first_list,) = server.requests_of(watch=False)
            assert first_list["path"] == f"/api/v1/namespaces/{NAMESPACE}/pods"
            assert first_list["query"]["labelSelector"] == f"ray.io/cluster={CLUSTER},ray.io/node-type=worker"
            assert first_list["query"]["labelSelector"] == pods.label_selector == label_selector(CLUSTER)
            assert set(pods.snapshot()) == {GPU_POD}
            assert isinstance(pods.snapshot()[GPU_POD], client.V1Pod)

            eta_unschedulable, provider = pods.eta(now=EPOCH0 + 30)
            assert provider == "gpu"
            assert eta_unschedulable == NODE_PROVISIONING_S - 30 + IMAGE_PULL_S + RAY_START_S

            # the watch: from the list's resourceVersion, same selector, server-side timeout
            wait_until(lambda: server.requests_of(watch=True))
            watch = server.requests_of(watch=True)[0]["query"]
            assert watch["labelSelector"] == first_list["query"]["labelSelector"]
            assert watch["resourceVersion"] == "1003" and watch["timeoutSeconds"] == "240"
            assert watch["allowWatchBookmarks"] == "true"

            # a node came up (+250 s): the pod is bound and pulls its image
            server.put(ray_pod(GPU_POD, creating(250), group="gpu", node="gke-gpu-pool-1"))
            wait_until(lambda: phase_of(pods, GPU_POD) is StartPhase.PULLING_IMAGE)
            eta_pulling, provider = pods.eta(now=EPOCH0 + 260)
            assert provider == "gpu" and eta_pulling == IMAGE_PULL_S - 10 + RAY_START_S
            assert eta_pulling < eta_unschedulable

            server.put(ray_pod(GPU_POD, running(250, 330, ready=False), group="gpu", node="gke-gpu-pool-1"))
            wait_until(lambda: phase_of(pods, GPU_POD) is StartPhase.STARTING)
            assert pods.eta(now=EPOCH0 + 335) == (RAY_START_S - 5, "gpu")

            server.put(ray_pod(GPU_POD, running(250, 330, ready=True), group="gpu", node="gke-gpu-pool-1"))
            wait_until(lambda: phase_of(pods, GPU_POD) is StartPhase.READY)
            assert pods.eta(now=EPOCH0 + 350) == (None, None)

            # a scale-up adds a CPU worker, then the autoscaler removes it again
            server.put(ray_pod(CPU_POD, just_created(), group="cpu", created=400))
            wait_until(lambda: CPU_POD in pods.snapshot())
            assert pods.eta(now=EPOCH0 + 400) == (SCHEDULING_S + IMAGE_PULL_S + RAY_START_S, "cpu")
            assert [s.name for s in pods.starts(now=EPOCH0 + 400)] == [CPU_POD, GPU_POD]
            server.delete(CPU_POD)
            wait_until(lambda: CPU_POD not in pods.snapshot())
            assert set(pods.snapshot()) == {GPU_POD} and pods.eta(now=EPOCH0 + 410) == (None, None)
            assert pods.lists == 1 and pods.last_error is None  # one list, then events only


def test_watcher_relists_after_410_gone_and_after_errors():
    with FakeKubeApi() as server:
        server.failures = [(403, "Forbidden"), (500, "InternalError")]  # e.g. no RBAC yet, then a hiccup
        server.put(ray_pod(GPU_POD, unschedulable(0)))
        with WorkerPods(api_client_for(server), NAMESPACE, CLUSTER, backoff_s=(0.05, 0.2)) as pods:
            assert pods.wait_synced(10)
            assert len(server.requests_of(watch=False)) == 3 and pods.lists == 1
            assert pods.eta(now=EPOCH0)[1] == "gpu"
            wait_until(lambda: server.requests_of(watch=True))

            # The pod moves on while the history is compacted away: no event reaches the watch,
            # the resumed watch gets 410 Gone, and only the re-list shows the new state.
            server.put(ray_pod(GPU_POD, creating(200), node="gke-gpu-pool-1"), record=False)
            server.compact()
            wait_until(lambda: pods.lists == 2)
            assert pods.last_error is not None and pods.last_error.startswith("410")
            assert phase_of(pods, GPU_POD) is StartPhase.PULLING_IMAGE and pods.synced
            assert pods.eta(now=EPOCH0 + 200) == (IMAGE_PULL_S + RAY_START_S, "gpu")
            # and it watches again, from the new list's version
            wait_until(lambda: server.requests_of(watch=True)[-1]["query"]["resourceVersion"] == str(server.version))
            server.put(ray_pod(GPU_POD, running(200, 290, ready=True), node="gke-gpu-pool-1"))
            wait_until(lambda: phase_of(pods, GPU_POD) is StartPhase.READY)
            assert len(server.requests_of(watch=False)) == 4  # 403, 500, the list, the re-list


def test_without_a_successful_list_there_is_no_eta():
    with FakeKubeApi() as server:
        server.failures = [(403, "Forbidden")] * 1000  # the Role is missing
        server.put(ray_pod(GPU_POD, unschedulable(0)))
        pods = WorkerPods(api_client_for(server), NAMESPACE, CLUSTER, backoff_s=(0.02, 0.05))
        try:
            wait_until(lambda: len(server.requests_of(watch=False)) >= 3)
            assert not pods.synced and pods.snapshot() == {}
            assert pods.eta(now=EPOCH0) == (None, None)
            assert pods.last_error.startswith("403")
        finally:
            pods.close()


@pytest.mark.parametrize("connection_close", [False, True], ids=["keep-alive", "connection-close"])
def test_close_ends_an_open_watch_promptly(connection_close):
    with FakeKubeApi(connection_close=connection_close) as server:
        server.put(ray_pod(GPU_POD, unschedulable(0)))
        pods = WorkerPods(api_client_for(server), NAMESPACE, CLUSTER)
        assert pods.wait_synced(10)
        wait_until(lambda: server.requests_of(watch=True))
        time.sleep(0.2)  # the watch is open and idle (its timeout is 240 s)
        began = time.monotonic()
        pods.close()
        assert time.monotonic() - began < 3
        assert not pods._thread.is_alive()
        pods.start()  # a no-op after close
        assert not pods._thread.is_alive()


# ------------------------------------------------------------------------------------------
# The environment
# ------------------------------------------------------------------------------------------


def _api_clients() -> int:
    return sum(isinstance(o, client.ApiClient) for o in gc.get_objects())


def test_from_environment_is_none_off_kubernetes_and_creates_no_client(tmp_path):
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        pytest.skip("this test process runs inside a Kubernetes pod")
    gc.collect()
    before = _api_clients()
    assert WorkerPods.from_environment() is None  # this machine: no KUBERNETES_SERVICE_HOST
    assert WorkerPods.from_environment(environ={}) is None
    # a service host but no service-account files (automountServiceAccountToken: false)
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "RAY_CLUSTER_NAME": CLUSTER}
    assert WorkerPods.from_environment(environ=env, service_account_dir=tmp_path) is None
    # the service account, but no RAY_CLUSTER_NAME (not a KubeRay pod)
    for name in ("token", "ca.crt", "namespace"):
        (tmp_path / name).write_text("x")
    assert WorkerPods.from_environment(environ={**env, "RAY_CLUSTER_NAME": ""}, service_account_dir=tmp_path) is None
    gc.collect()
    assert _api_clients() <= before


def _self_signed(tmp_path) -> tuple:
    """A certificate for 127.0.0.1 that is its own CA (what the kubelet mounts as ca.crt)."""
    pytest.importorskip("cryptography", reason="cryptography makes the test API server's certificate")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.crt", tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_from_environment_in_a_pod_uses_the_service_account(tmp_path):
    """The head pod's view: KUBERNETES_SERVICE_HOST/PORT, the service-account token, CA and
    namespace files, RAY_CLUSTER_NAME; the watcher talks HTTPS to the API server with the token."""
    cert_file, key_file = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("eyJhbGciOiJSUzI1NiJ9.head-pod-token")
    (sa / "ca.crt").write_bytes(cert_file.read_bytes())
    (sa / "namespace").write_text(NAMESPACE)
    with FakeKubeApi(tls=tls) as server:
        server.put(ray_pod(GPU_POD, unschedulable(0)))
        env = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.port),
            "RAY_CLUSTER_NAME": CLUSTER,
        }
        pods = WorkerPods.from_environment(environ=env, service_account_dir=sa)
        assert pods is not None
        try:
            assert (pods.namespace, pods.cluster_name) == (NAMESPACE, CLUSTER)
            assert pods.wait_synced(10)
            assert pods.eta(now=EPOCH0)[1] == "gpu"
            (listed,) = server.requests_of(watch=False)
            scheme, token = listed["authorization"].split(" ", 1)  # the auth scheme is case-insensitive
            assert (scheme.lower(), token) == ("bearer", "eyJhbGciOiJSUzI1NiJ9.head-pod-token")
            assert listed["query"]["labelSelector"] == f"ray.io/cluster={CLUSTER},ray.io/node-type=worker"
        finally:
            pods.close()
