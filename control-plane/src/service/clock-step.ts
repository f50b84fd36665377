/**
 * HW-FAULT-11: the staleness timer must not read a step of the plane's wall clock as silence (or as life).
 *
 * `lastSeenAt` is wall time (it is shown to operators and shared by replicas through the database), so a step of
 * the wall clock (NTP correcting a wrong clock, an operator's `date -s`, a VM resumed) moves every device's
 * apparent silence at once: forward by hours and the next sweep marks the whole fleet `stale` although every
 * device spoke a second ago; back by hours and a device that goes silent stays `trusted` for those hours.
 * The guard compares the wall clock with the monotonic clock (which never steps) at every sweep:
 *  - a difference that moved by more than CLOCK_STEP_THRESHOLD_MS since the last sweep is a step; the sweep then
 *    marks nothing for staleAfterMs of MONOTONIC time (every device gets a full window, on the clock as it is
 *    now, to be heard from), and says so at warn; another step restarts the window;
 *  - pending commands are not expired during that window either (a quarantine in flight must not be dropped
 *    because the plane's clock jumped; the agent judges expiry on its own clock anyway, HW-CMD-1);
 *  - after a backward step, a `lastSeenAt` more than FUTURE_LAST_SEEN_TOLERANCE_MS in the plane's future can
 *    only be a sighting from before the step: once the window has passed without a newer one, that device has
 *    been silent for staleAfterMs and is stale (the sweep's query counts it, device-side.ts).
 * Liveness itself still comes only from messages within MAX_CLOCK_DIFFERENCE_MS of the plane's clock (HW-LIVE-1):
 * a plane whose clock stays wrong cannot verify anyone and, after the window, its devices go `stale` (not
 * untrusted, HW-TRUST-2) until the clock is right again.
 */
import type pino from "pino";

/** A wall-minus-monotonic change above this between two sweeps (5 s apart) is a step, not NTP slewing (<= 0.5 ms/s). */
export const CLOCK_STEP_THRESHOLD_MS = 5_000;
/** Replicas' clocks differ a little: a last sighting this far ahead of ours is still an ordinary one. */
export const FUTURE_LAST_SEEN_TOLERANCE_MS = 60_000;

export interface ClockStepCheck {
  /** True while the sweep must mark nothing (a step was seen less than holdMs of monotonic time ago). */
  hold: boolean;
}

export class ClockStepGuard {
  private offset: number | null = null;
  private holdUntil = Number.NEGATIVE_INFINITY;

  /**
   * @param wallNow the plane's wall clock (ms since the epoch; the service's `now`)
   * @param monotonicNow a clock that never steps (ms; `performance.now`)
   * @param holdMs how long the sweep waits after a step (the staleness window, ms)
   */
  constructor(
    private readonly wallNow: () => number,
    private readonly monotonicNow: () => number,
    private readonly holdMs: number,
    private readonly logger: pino.Logger,
  ) {}

  /** Called by each periodic sweep (staleness, command expiry) before it reads the wall clock; any order. */
  check(): ClockStepCheck {
    const mono = this.monotonicNow();
    const offset = this.wallNow() - mono;
    if (this.offset !== null && Math.abs(offset - this.offset) > CLOCK_STEP_THRESHOLD_MS) {
      const steppedMs = Math.round(offset - this.offset);
      this.holdUntil = mono + this.holdMs;
      this.logger.warn({ steppedMs, holdMs: this.holdMs }, "the plane's clock stepped: no device is marked stale until every one had a full staleness window on the new clock");
    } else if (this.holdUntil !== Number.NEGATIVE_INFINITY && mono >= this.holdUntil) {
      this.holdUntil = Number.NEGATIVE_INFINITY;
      this.logger.info("staleness sweep resumed after a clock step");
    }
    this.offset = offset;
    return { hold: mono < this.holdUntil };
  }
}
