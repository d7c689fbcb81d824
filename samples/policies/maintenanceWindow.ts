/**
 * The module to hand to storelink (`--chart samples/policies/maintenanceWindow.ts`): the pure chart, and under
 * `implementations` the wall clock it leaves to its host.
 */
export { maintenanceWindowMachine } from './maintenanceWindow.machine.js';
export { maintenanceWindowClock as implementations } from './maintenanceWindow.clock.js';
