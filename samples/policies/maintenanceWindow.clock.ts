/**
 * The wall clock the maintenance-window chart asks for: how long until the nightly window opens, and until it
 * closes. Kept out of the chart so the chart stays a pure definition that tests can drive with fixed delays.
 */
import type { MaintenanceWindow, MaintenanceWindowContext } from './maintenanceWindow.machine.js';

const MINUTE_IN_MS = 60_000;
const DAY_IN_MS = 24 * 60 * MINUTE_IN_MS;

/** Milliseconds from `nowInMs` until the window next opens (a full day when it opens right now). */
export function msUntilWindowOpens(window: MaintenanceWindow, nowInMs: number): number {
  const sinceMidnight = nowInMs % DAY_IN_MS;
  const opensAt = window.startsAtMinuteOfDay * MINUTE_IN_MS;
  const wait = (opensAt - sinceMidnight + DAY_IN_MS) % DAY_IN_MS;
  return wait === 0 ? DAY_IN_MS : wait;
}

/** Milliseconds from `nowInMs` until the window closes, or 0 when it is not open. */
export function msUntilWindowCloses(window: MaintenanceWindow, nowInMs: number): number {
  const sinceOpening = (nowInMs % DAY_IN_MS) - window.startsAtMinuteOfDay * MINUTE_IN_MS;
  const intoWindow = (sinceOpening + DAY_IN_MS) % DAY_IN_MS;
  const length = window.lengthInMinutes * MINUTE_IN_MS;
  return intoWindow < length ? length - intoWindow : 0;
}

export const maintenanceWindowClock = {
  guards: {
    insideWindow: ({ context }: { context: MaintenanceWindowContext }) => msUntilWindowCloses(context.window, Date.now()) > 0,
  },
  delays: {
    untilWindowOpens: ({ context }: { context: MaintenanceWindowContext }) => msUntilWindowOpens(context.window, Date.now()),
    untilWindowCloses: ({ context }: { context: MaintenanceWindowContext }) => msUntilWindowCloses(context.window, Date.now()),
  },
};
