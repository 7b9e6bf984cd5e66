"""The RayCluster's worker pods, seen through the Kubernetes API: how long until those now starting are Ready.

On Kubernetes a cold start often waits for a worker pod before Serve can even place the replica:
the Ray autoscaler asks KubeRay for a pod, the pod waits for a node (the cluster autoscaler or
Karpenter provisions one: minutes for a GPU node), then pulls the image, then starts Ray. Serve's
own view (``replica_states`` ``{"STARTING": 1}``) cannot tell these apart; the pods can. This
package reads them and turns each into a remaining-time estimate, so that ``session.preparing``
can say "about 5 minutes" while a GPU node is being provisioned instead of repeating the mean of
earlier starts.

One module a layer, each usable alone (this package imports none of them: import
``deployments.admission.pods.<module>``):

* ``kuberay``: KubeRay's pod labels (``label_selector``) and what KubeRay and Kubernetes put in
  the head pod (``RAY_CLUSTER_NAME``, the service-account mount);
* ``phases``: the start phases (``StartPhase``: unschedulable, scheduling, pulling_image,
  starting, ready, failed, terminating) and their default durations (``StartEstimates``, module
  constants);
* ``classify``: ``classify_pod`` maps one ``kubernetes.client.V1Pod`` onto its phase, and
  ``pod_start`` adds its seconds until Ready (``PodStart``);
* ``eta``: ``pod_eta`` combines the worker pods into one ``(eta_s, provider)``: the seconds until
  the worker pods now starting are Ready, and the ``ray.io/group`` (worker group name) of the pod
  that takes longest;
* ``watcher``: ``WorkerPods`` keeps the pods of one RayCluster up to date (the Kubernetes client,
  a list and a watch in a daemon thread, the pod cache; the admission service starts one on the
  head pod).

Times: ``now`` and every returned time are wall-clock epoch seconds (``time.time()``), because the
API server's timestamps (``creationTimestamp``, ``lastTransitionTime``, ``startedAt``) are
wall-clock; all durations are seconds.
"""
