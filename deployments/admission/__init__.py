"""Admission: one queue and one view of realtime-session capacity for every ingress replica.

The realtime WebSocket (``/v1/realtime``) admits a client onto the model stack or tells it to
wait. The outcome reaches the client as a status event (JSON) followed, unless it is admitted, by a
WebSocket close code: the Naia gateway's status contract (docs/admission.md), with the
setup frame of the Naia connection flow (docs/realtime.md) (``{"setup": {"apiKey", "locale",
"instanceId"}}``). Field names below are the contract's.

======================  =====  ==========================================================
event ``type``          close  fields (all times in seconds)
======================  =====  ==========================================================
``session.created``     —      ``session.id`` (admitted: configure with session.update)
``session.queued``      4503   ``position`` (0-based), ``queue_len`` (waiters incl. you),
                               ``reservation_token``, ``eta_s`` when an estimate exists,
                               ``instance``
``session.preparing``   4503   same as queued + ``eta_s`` (observed start times) and
                               ``provider`` ("local" on one machine)
``session.sold_out``    4503   ``retry_after_s``, ``tier_a_hint``
``session.consent_required`` 4409  ``branches`` (["replace", "add"] or ["replace"])
``session.error``       4503   ``error`` {message, type, code}: assigned, but a backend
                               deployment has no endpoint
``error``               4001   missing / invalid API key (``error.type`` authentication_error)
``error``               4003   key over its concurrent-session quota (insufficient_quota)
``error``               4500   any other internal failure (server_error)
(none, decided by the ingress) 4002  superseded: the account's session was replaced
======================  =====  ==========================================================

Consent (an extension of the setup frame, documented here): when the account already holds
``sessions_per_account`` live sessions the client receives ``session.consent_required`` and
repeats its setup frame with ``"consent": "replace"`` (the oldest live session of the account is
closed with 4002 and the new one takes its slot at once) or ``"consent": "add"`` (a further
session, allowed up to ``max_sessions_per_account``; it takes a slot like any other arrival and may
be queued). The ingress passes ``setup.consent`` as ``request["consent"]``.

One module per concern:

* :mod:`.contract` — close codes, outcome and event names, the decision builders;
* :mod:`.config` — :class:`~.config.AdmissionConfig` and the API-key entries;
* :mod:`.keys` — :class:`~.keys.ApiKeys` (REST and realtime auth, ``key_id`` and role);
* :mod:`.core` — :class:`~.core.AdmissionState`, the pure-Python core (no Ray): slots, admitted
  sessions, the FIFO of reservations, held slots, per-account limits, consent and supersede
  bookkeeping, counters, ``mean_session_s``. It takes an injected clock and serialises to / from
  a dict;
* :mod:`.cluster` — deployment states read from Serve, live replica actors, and the REST
  cold-start helpers (:func:`~.cluster.wait_until_running`, :func:`~.cluster.model_preparing_error`);
* :mod:`.server` — :class:`~.server.AdmissionServer`, the Serve deployment (exactly one replica)
  that every ingress replica calls through a handle; it reads capacity from ``serve.status()``
  and persists the core.

Importers name the module they need (``from deployments.admission.keys import ApiKeys``); this
package file holds only this overview.

Persistence (why Ray's internal KV, plus ingress heartbeats)
------------------------------------------------------------
Queued clients hold no socket — they were closed with 4503 and come back later — so no ingress
replica knows their place: queue positions and reservations exist only in the admission service
and cannot be rebuilt from the ingress replicas. The state is therefore written through to Ray's
internal KV store (the GCS key-value store that Serve's own controller checkpoints into) after
every change and before the decision is returned, so a client is never told a position that a
restart could forget. A detached named actor would just move the single point of failure into
another process that needs persisting in turn; the GCS outlives any actor or replica, and with
GCS fault tolerance (KubeRay + Redis) it also outlives the head node.

Ingress heartbeats (:meth:`AdmissionServer.heartbeat`) complement it: every ingress replica
reports its live session ids every ``heartbeat_interval_s``. That reaps the sessions of an ingress
replica that died (no heartbeat for ``replica_timeout_s``) or that closed a socket without calling
``release``, re-adopts live sessions the store does not know (the KV was lost, e.g. a head restart
without GCS fault tolerance) and re-delivers 4002 closes that were not picked up.
After a restart every reservation, hold and ingress replica gets a fresh lease from the moment of
recovery (time the service was down does not count against clients that could not reach it).
"""
