/** Renders a chart model as a Mermaid `stateDiagram-v2`, the format architects paste into docs and PRs. */
import type { ChartModel, ChartState, ChartTransition } from './chartModel.js';

/** Mermaid state ids may not contain dots or spaces. */
function mermaidId(id: string): string {
  return id.replace(/[^A-Za-z0-9_]/g, '_');
}

/** Keeps free text on one line and away from Mermaid's own syntax. */
function text(value: string): string {
  return value.replace(/[;#{}]/g, ' ').replace(/\s+/g, ' ').trim();
}

function formatDelay(delay: string | number | undefined): string {
  if (delay === undefined) return 'after';
  return typeof delay === 'number' ? `after ${delay} ms` : `after ${delay}`;
}

function label(transition: ChartTransition): string {
  const trigger =
    transition.kind === 'after' ? formatDelay(transition.delay) : transition.kind === 'always' ? 'always' : transition.event!;
  const guard = transition.guard === undefined ? '' : ` [${transition.guard}]`;
  const actions = transition.actions.length === 0 ? '' : ` / ${transition.actions.join(', ')}`;
  return text(`${trigger}${guard}${actions}`);
}

function renderStates(states: readonly ChartState[], initial: string | undefined, indent: string, lines: string[]): void {
  if (initial !== undefined) lines.push(`${indent}[*] --> ${mermaidId(initial)}`);
  for (const state of states) {
    const id = mermaidId(state.id);
    lines.push(`${indent}state "${text(state.key)}" as ${id}`);
    if (state.description !== undefined) lines.push(`${indent}${id} : ${text(state.description)}`);
    if (state.states.length > 0) {
      lines.push(`${indent}state ${id} {`);
      if (state.type === 'parallel') {
        state.states.forEach((region, index) => {
          if (index > 0) lines.push(`${indent}  --`);
          renderStates([region], region.id, `${indent}  `, lines);
        });
      } else {
        renderStates(state.states, state.initial, `${indent}  `, lines);
      }
      lines.push(`${indent}}`);
    }
    if (state.tags.length > 0) lines.push(`${indent}note right of ${id} : tags ${state.tags.join(', ')}`);
    if (state.type === 'final') lines.push(`${indent}${id} --> [*]`);
  }
  for (const state of states) {
    for (const transition of state.transitions) {
      const targets = transition.targets.length === 0 ? [state.id] : transition.targets;
      for (const target of targets) lines.push(`${indent}${mermaidId(state.id)} --> ${mermaidId(target)} : ${label(transition)}`);
    }
  }
}

export function renderMermaid(model: ChartModel): string {
  const lines = ['stateDiagram-v2'];
  if (model.description !== undefined) lines.push(`  %% ${text(model.description)}`);
  renderStates(model.states, model.initial, '  ', lines);
  if (model.transitions.length > 0) {
    // Mermaid has no edge from the diagram itself: a chart-wide transition is drawn from every top-level state.
    lines.push(`  %% chart-wide transitions (${model.id}), drawn from every top-level state`);
    for (const state of model.states) {
      for (const transition of model.transitions) {
        for (const target of transition.targets) lines.push(`  ${mermaidId(state.id)} --> ${mermaidId(target)} : ${label(transition)}`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}
