/** Links as the API shows them: the chart's state value, not the JSON text the dispatcher keeps. */
import type { JsonValue } from '../../core/json.js';
import type { LinkView } from '../dispatcher.js';
import type { LinkChange } from '../storeLinks.js';

/** A store and its link, as the API shows it: `state` is the chart's state value, not its JSON text. */
export interface StoreLinkView extends Omit<LinkView, 'state'> {
  state: JsonValue;
}

function stateValueOf(stateKey: string): JsonValue {
  try {
    return JSON.parse(stateKey) as JsonValue;
  } catch {
    return stateKey;
  }
}

export function storeLinkViewOf(view: LinkView): StoreLinkView {
  return { ...view, state: stateValueOf(view.state) };
}

export function linkChangeViewOf(change: LinkChange) {
  return {
    storeId: change.storeId,
    state: stateValueOf(change.state),
    tags: change.tags,
    previousState: change.previousState === undefined ? null : stateValueOf(change.previousState),
  };
}
