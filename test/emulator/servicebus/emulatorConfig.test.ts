import { describe, expect, it } from 'vitest';
import { parseEmulatorConfig, parseIsoDuration } from '../../../src/emulator/servicebus/index.js';

const officialSample = {
  UserConfig: {
    Namespaces: [
      {
        Name: 'sbemulatorns',
        Queues: [
          {
            Name: 'queue.1',
            Properties: {
              DeadLetteringOnMessageExpiration: false,
              DefaultMessageTimeToLive: 'PT1H',
              DuplicateDetectionHistoryTimeWindow: 'PT20S',
              ForwardDeadLetteredMessagesTo: '',
              ForwardTo: '',
              LockDuration: 'PT1M',
              MaxDeliveryCount: 3,
              RequiresDuplicateDetection: false,
              RequiresSession: false,
            },
          },
        ],
        Topics: [
          {
            Name: 'topic.1',
            Properties: { DefaultMessageTimeToLive: 'PT1H', DuplicateDetectionHistoryTimeWindow: 'PT20S', RequiresDuplicateDetection: false },
            Subscriptions: [
              {
                Name: 'subscription.1',
                Properties: { LockDuration: 'PT30S', MaxDeliveryCount: 3, ForwardTo: 'queue.1' },
                Rules: [
                  {
                    Name: 'app-prop-filter-1',
                    Properties: {
                      FilterType: 'Correlation',
                      CorrelationFilter: { ContentType: 'application/text', Label: 'subject1', Properties: { prop1: 'value1' } },
                    },
                  },
                  { Name: 'sql', Properties: { FilterType: 'Sql', SqlFilter: { SqlExpression: "color = 'red'" } } },
                ],
              },
            ],
          },
        ],
      },
    ],
    Logging: { Type: 'File' },
  },
};

describe('parseEmulatorConfig', () => {
  it('reads the official Config.json shape into options', () => {
    const { namespaces } = parseEmulatorConfig(JSON.stringify(officialSample));
    expect(namespaces).toEqual([
      {
        name: 'sbemulatorns',
        queues: [
          {
            name: 'queue.1',
            deadLetteringOnMessageExpiration: false,
            defaultMessageTimeToLiveInMs: 3_600_000,
            duplicateDetectionHistoryTimeWindowInMs: 20_000,
            lockDurationInMs: 60_000,
            maxDeliveryCount: 3,
            requiresDuplicateDetection: false,
            requiresSession: false,
          },
        ],
        topics: [
          {
            name: 'topic.1',
            defaultMessageTimeToLiveInMs: 3_600_000,
            duplicateDetectionHistoryTimeWindowInMs: 20_000,
            requiresDuplicateDetection: false,
            subscriptions: [
              {
                name: 'subscription.1',
                lockDurationInMs: 30_000,
                maxDeliveryCount: 3,
                forwardTo: 'queue.1',
                rules: [
                  {
                    name: 'app-prop-filter-1',
                    correlationFilter: { contentType: 'application/text', subject: 'subject1', applicationProperties: { prop1: 'value1' } },
                  },
                  { name: 'sql', sqlFilter: "color = 'red'" },
                ],
              },
            ],
          },
        ],
      },
    ]);
  });

  it.each([
    ['PT1M', 60_000],
    ['PT0.5S', 500],
    ['P1DT2H', 26 * 3_600_000],
    ['P1W', 7 * 86_400_000],
    ['PT1H30M15S', 5_415_000],
  ])('parses the ISO-8601 duration %s', (text, ms) => {
    expect(parseIsoDuration(text)).toBe(ms);
  });

  it.each([
    [{}, /UserConfig/],
    [{ UserConfig: { Namespaces: [{ Queues: [{ Name: 'q', Properties: { LockDuration: '60s' } }] }] } }, /UserConfig\.Namespaces\[0\]\.Queues\[0\]\.Properties\.LockDuration: "60s" is not an ISO-8601 duration/],
    [{ UserConfig: { Namespaces: [{ Queues: [{ Name: 'q', Properties: { MaxDeliveryCount: 0 } }] }] } }, /Queues\[0\]\.Properties\.MaxDeliveryCount/],
    [{ UserConfig: { Namespaces: [{ Topics: [{ Name: '' }] }] } }, /Topics\[0\]\.Name/],
    ['{ not json', /not valid JSON/],
  ])('names the failing path in its error (%#)', (input, message) => {
    expect(() => parseEmulatorConfig(input)).toThrow(message);
  });
});
