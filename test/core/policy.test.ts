import { describe, expect, it } from 'vitest';
import {
  DEFAULT_LINK_POLICY,
  DEFAULT_OPERATION_POLICY,
  defaultPolicy,
  operationPolicyFor,
  parsePolicy,
} from '../../src/core/policy.js';
import { StorelinkError } from '../../src/core/errors.js';

function policyError(value: unknown, source?: string): StorelinkError {
  try {
    parsePolicy(value, source === undefined ? {} : { source });
  } catch (error) {
    if (error instanceof StorelinkError) return error;
    throw error;
  }
  throw new Error('expected the policy to be rejected');
}

describe('parsePolicy', () => {
  it('turns an empty document into the defaults', () => {
    expect(parsePolicy({})).toEqual({ link: DEFAULT_LINK_POLICY, operationDefaults: DEFAULT_OPERATION_POLICY, operations: {} });
    expect(defaultPolicy()).toEqual(parsePolicy({}));
  });

  it('fills each operation type from operationDefaults, then from the built-in defaults', () => {
    const policy = parsePolicy({
      operationDefaults: { relayTimeoutInMs: 4000 },
      operations: { 'stock.query': { latency: 'realtime', fallback: 'cached' } },
    });
    expect(policy.operations['stock.query']).toEqual({
      latency: 'realtime',
      fallback: 'cached',
      onStoreFailure: 'fallback',
      relayTimeoutInMs: 4000,
      timeToLiveInMs: DEFAULT_OPERATION_POLICY.timeToLiveInMs,
      cachedReplyMaxAgeInMs: DEFAULT_OPERATION_POLICY.cachedReplyMaxAgeInMs,
      maxCachedReplies: DEFAULT_OPERATION_POLICY.maxCachedReplies,
    });
    expect(operationPolicyFor(policy, 'stock.query').fallback).toBe('cached');
    expect(operationPolicyFor(policy, 'price.update')).toEqual({ ...DEFAULT_OPERATION_POLICY, relayTimeoutInMs: 4000 });
  });

  it("takes the type's fallback on a store failure by default, and answers it as it is with onStoreFailure: fail", () => {
    expect(DEFAULT_OPERATION_POLICY.onStoreFailure).toBe('fallback');
    const policy = parsePolicy({ operationDefaults: { onStoreFailure: 'fail' }, operations: { 'stock.query': { onStoreFailure: 'fallback' }, 'clickAndCollect.order': {} } });
    expect(operationPolicyFor(policy, 'stock.query').onStoreFailure).toBe('fallback');
    expect(operationPolicyFor(policy, 'clickAndCollect.order').onStoreFailure).toBe('fail');
    expect(operationPolicyFor(policy, 'price.update').onStoreFailure).toBe('fail');
  });

  it('merges a partial link policy onto the defaults', () => {
    expect(parsePolicy({ link: { failureThreshold: 5 } }).link).toEqual({ ...DEFAULT_LINK_POLICY, failureThreshold: 5 });
  });

  it('allows a $schema key for editors', () => {
    expect(parsePolicy({ $schema: './policy.schema.json' }).link).toEqual(DEFAULT_LINK_POLICY);
  });

  it.each([
    ['link.failureThreshold', { link: { failureThreshold: 0 } }, 'expected at least 1'],
    ['link.failureThreshold', { link: { failureThreshold: 2.5 } }, 'whole number'],
    ['link.openCooldownInMs', { link: { openCooldownInMs: '5s' } }, 'milliseconds'],
    ['link.maxCooldownInMs', { link: { openCooldownInMs: 10_000, maxCooldownInMs: 5_000 } }, 'at least openCooldownInMs'],
    ['link.probeIntervalInMs', { link: { probeIntervalInMs: 10 } }, 'at least 100'],
    ['link.healthyProbeIntervalInMs', { link: { healthyProbeIntervalInMs: 10 } }, 'at least 100'],
    ['operations["stock.query"].maxCachedReplies', { operations: { 'stock.query': { maxCachedReplies: 0 } } }, 'at least 1'],
    ['operations["stock.query"].cachedReplyMaxAgeInMs', { operations: { 'stock.query': { cachedReplyMaxAgeInMs: 5 } } }, 'at least 1000'],
    ['link', { link: { failureTreshold: 3 } }, 'failureTreshold'],
    ['operationDefaults.latency', { operationDefaults: { latency: 'fast' } }, '"async"|"realtime"'],
    ['operations["stock.query"].fallback', { operations: { 'stock.query': { fallback: 'cache' } } }, '"queue"|"reject"|"cached"'],
    ['operations["stock.query"].onStoreFailure', { operations: { 'stock.query': { onStoreFailure: 'retry' } } }, '"fallback"|"fail"'],
    ['operations["stock.query"].relayTimeoutInMs', { operations: { 'stock.query': { relayTimeoutInMs: 120_000 } } }, 'at most 60000'],
    ['operations["stock.query"].timeToLiveInMs', { operations: { 'stock.query': { timeToLiveInMs: 10 } } }, 'at least 1000'],
    ['operations.stock', { operations: { stock: {} } }, 'dot-namespaced'],
    [undefined, { operation: {} }, 'operation'],
    [undefined, [], 'expected object'],
  ])('names the failing field %s', (field, document, expected) => {
    const error = policyError(document);
    expect(error.code).toBe('POLICY_INVALID');
    expect(error.field).toBe(field);
    if (field !== undefined) expect(error.message).toContain(field);
    expect(error.message).toContain(expected);
  });

  it('names the source, and lists every problem', () => {
    const error = policyError({ link: { failureThreshold: 0, probeIntervalInMs: 1 } }, 'policy.json');
    expect(error.message).toMatch(/^policy\.json: invalid policy: link\.failureThreshold/);
    expect(error.message).toContain('also link.probeIntervalInMs');
  });

  it('shows the offending value', () => {
    expect(policyError({ operations: { 'a.b': { fallback: 'cache' } } }).message).toContain('got "cache"');
  });
});
