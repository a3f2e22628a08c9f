import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createTelemetry, withInvocation } from '../../functions/telemetry.js';

/** Every JSON line written to stdout or stderr (Powertools writes WARN and ERROR to stderr) while `spy` is on. */
function captureLines(): () => Record<string, unknown>[] {
  const chunks: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  };
  vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  vi.spyOn(process.stderr, 'write').mockImplementation(capture);
  return () =>
    chunks
      .join('')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const telemetry = () => createTelemetry({ env: { POWERTOOLS_SERVICE_NAME: 'svc', POWERTOOLS_METRICS_NAMESPACE: 'Ns' }, job: 'j', vertex: 'v', always: ['messagesIn'] });

describe('Lambda telemetry (functions/telemetry.ts)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('sums counts into one value and keeps every sample, per dimension set, in one EMF object each per invocation', async () => {
    const t = telemetry();
    const lines = captureLines();
    await withInvocation(t, undefined, async () => {
      t.metrics.count('numRecordsIn', 3);
      t.metrics.count('numRecordsIn', 4);
      t.metrics.sample('stepDuration', MetricUnit.Milliseconds, 12);
      t.metrics.sample('stepDuration', MetricUnit.Milliseconds, 30);
      t.jobMetrics.count('numberOfCompletedCheckpoints');
    });
    const emf = lines();
    expect(emf).toHaveLength(2);
    expect(emf[0]).toMatchObject({ job: 'j', vertex: 'v', numRecordsIn: 7, stepDuration: [12, 30], messagesIn: 0 });
    expect(emf[0]).toMatchObject({ _aws: { CloudWatchMetrics: [{ Namespace: 'Ns', Dimensions: [['job', 'vertex']] }] } });
    expect(emf[1]).toMatchObject({ job: 'j', numberOfCompletedCheckpoints: 1, _aws: { CloudWatchMetrics: [{ Dimensions: [['job']] }] } });
    expect(emf[1]).not.toHaveProperty('vertex');
  });

  it('publishes what a failed invocation counted, without the zeros of a batch that did not happen, and rethrows', async () => {
    const t = telemetry();
    const lines = captureLines();
    await expect(withInvocation(t, undefined, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(lines()).toEqual([]);
    await expect(
      withInvocation(t, undefined, async () => {
        t.metrics.count('stepFailures');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const [emf] = lines();
    expect(emf).toMatchObject({ stepFailures: 1 });
    expect(emf).not.toHaveProperty('messagesIn');
  });

  it('writes lib log lines through the Powertools logger: level, message, keys; the lib’s own time stamp is left out', async () => {
    const t = telemetry();
    const lines = captureLines();
    t.log({ level: 'warn', message: 'message sent to the dead-letter queue', time: '2020-01-01T00:00:00Z', subtask: '0', code: 'MALFORMED_MESSAGE' });
    t.log({ level: 'info', message: 'step', recordsIn: 5 });
    const [warn, info] = lines();
    expect(warn).toMatchObject({ level: 'WARN', message: 'message sent to the dead-letter queue', service: 'svc', job: 'j', vertex: 'v', subtask: '0', code: 'MALFORMED_MESSAGE' });
    expect(warn).not.toHaveProperty('time');
    expect(info).toMatchObject({ level: 'INFO', message: 'step', recordsIn: 5, timestamp: expect.any(String) });
  });
});
