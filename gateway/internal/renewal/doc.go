// Package renewal is the hub's renewal orchestrator: it keeps every device's certificate
// renewed without anyone having to remember (gateway/README.md, "How a certificate is issued
// and renewed", step 3; issue "Automatic renewal across the fleet").
//
// A reconcile pass (Scheduler.Reconcile) looks at the devices with an active certificate
// that need it — all of them in the first pass, and in the first under a new policy; after
// that only those an in-memory index says are due, those commanded or held back, those
// touched since the last pass (Touch, DeviceOnline and the hooks) and the campaign entries
// it reaches, so that a pass costs what is due, not the fleet (issue 11):
//
//   - It computes the certificate's window with the policy in force and publishes it,
//     retained, when it differs from the one last published (kept in the device's
//     inventory.RenewalStatus as WindowStart/WindowEnd, so a restart republishes nothing).
//   - An agent renews on its own between the window's Start and End. A device still on the
//     certificate at End becomes "due" and gets a renew command; so does one forced by an
//     admin (Force) or picked by a campaign. Commands go out under a global rate and a cap on
//     commands in flight, most urgent first (policy.Urgency: emergencies, then high-priority
//     classes, then the earliest deadline). A due device that is offline stays "due" and is
//     commanded when it reconnects (DeviceOnline).
//   - A command has a deadline (AttemptDeadline). A commit (a new active certificate, hence a
//     new window) returns the device to "idle"; no commit by the deadline, a rollback, or a
//     final refusal of its request is a failure. Failures back off exponentially with jitter
//     (policy.Backoff); after MaxFailures the device is "failing", with the cause shown, and is
//     still retried at up to BackoffMax. At the emergency floor the backoff shrinks to
//     BackoffBase: a certificate about to expire is retried at once.
//   - A device without an agent (mechanism manual) gets reminder events instead: when its
//     window opens, and at the lead times before expiry (7 days, 1 day, expiry by default),
//     each once.
//   - Campaigns (StartCampaign) renew or re-key a selection of devices at their own rate,
//     canaries first, and stop when too many fail.
//
// # Invariants
//
// All state lives in the inventory: the device's RenewalStatus (State, Failures,
// NextAttemptAt — the command's deadline while "commanded", the next retry while "due" or
// "failing", the next reminder for a manual device —, LastCause, WindowStart, WindowEnd), the
// device's stored command, the audit events the scheduler appends (Event* kinds), and each
// campaign's row with one row per device (inventory.CampaignRecord). A new Scheduler on the
// same store therefore loses nothing and repeats nothing: a device commanded before a restart
// is not commanded again until its deadline has passed.
//
// A command is stored whole before it is sent: the device's renewal state (commanded until
// the deadline), the command itself, its campaign entry (commanded, with commanded_at and the
// command id) and its renewal.commanded event are one transaction (Store.RecordCommand), and
// only then is the command handed to the Commander. A crash leaves all of them or none; the
// hub's device state machine sends a stored command on the device's next subscription, after
// a restart too. A pass writes only what changed — a device's status, the campaign entries
// whose stage moved, one row each, and a campaign's end —, never a campaign's every entry.
// Campaign outcomes are derived from the devices (a new active certificate, a grown failure
// count), so a pass cut short derives them again. The only state kept in memory is what may
// be lost: the rate limiters' tokens, outcomes reported by hooks (Failed) that a pass has not
// yet applied (the deadline or the inventory's attempts catch them after a crash), and the
// index of when each device next needs a look (dueIndex), which a new Scheduler rebuilds
// from the inventory in its first pass. Whoever changes a device's stored state outside the
// scheduler calls Touch (the hub does it for every change it makes), or the index does not
// see the change before the device's next time.
//
// # Concurrency
//
// A Scheduler is safe for concurrent use. Passes, Force and StartCampaign are serialized by
// one mutex. Kick, DeviceOnline, Committed and Failed never block and never wait for a pass:
// the hub may call them from its message handlers. The Commander, PublishWindow and Notify
// functions are called during a pass, with the pass's mutex held: they must not call back
// into the Scheduler's blocking methods.
package renewal
