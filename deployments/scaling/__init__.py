"""Replica targets that follow the realtime queue, and the admin's unload / load of a model.

Ray Serve's autoscaler counts the requests ongoing at each replica. A realtime session holds
requests only once it is admitted, so the people waiting in admission's queue are invisible to it:
under load the queue grows and nothing scales. This package closes that gap with Serve's own
mechanism, a custom autoscaling policy, rather than a loop of our own that redeploys.

* :mod:`.store` — the records in Ray's internal KV (the GCS key-value store that Serve's
  controller checkpoints into): the admission service's demand per deployment (sessions admitted,
  sessions waiting, sessions per replica) and the admin's unload marks, which the policy reads,
  and the replica bounds the policy applies, which the admin model records read;
* :mod:`.policy` — :class:`~.policy.SessionAutoscalingPolicy`, the deployment-level policy Serve's
  controller calls on every control-loop tick, and :func:`~.policy.target_replicas`, its pure core;
* :mod:`.options` — what ``build_app`` adds to a deployment's ``autoscaling_config`` so that the
  policy drives it.

Data flows one way per record: the admission service and the admin routes write what the policy
reads; the policy, in the Serve controller, writes only its own bounds, which nothing it reads
depends on.
"""
