/** Links as the API shows them: the top-level state a dashboard shows, and the chart's whole state value. */
import type { JsonValue } from '../../core/json.js';
import type { LinkView } from '../dispatcher.js';
import { topStateOf, type LinkChange } from '../storeLinks.js';

/** A store and its link, as the API shows it. */
export interface StoreLinkView extends Omit<LinkView, 'state'> {
  /** The chart's top-level state (`tripped`). */
  state: string;
  /** The whole state value, sub-states included (`{ "tripped": { "cooldown": "running", … } }`). */
  stateValue: JsonValue;
}

export function storeLinkViewOf(view: LinkView): StoreLinkView {
  return { ...view, state: topStateOf(view.state), stateValue: view.state as JsonValue };
}

export function linkChangeViewOf(change: LinkChange) {
  return {
    storeId: change.storeId,
    state: topStateOf(change.state),
    stateValue: change.state as JsonValue,
    tags: change.tags,
    previousState: change.previousState === undefined ? null : topStateOf(change.previousState),
  };
}
