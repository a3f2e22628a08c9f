import type { JobOverview, JobState } from './job-control.js';
import type { JobDetailsInfo, JobIdsWithStatusOverview, JobVertexDetailsInfo } from './flink-types.js';

/** The execution state Flink shows for a vertex while the job is in `state`. */
function vertexStatus(state: JobState): string {
  switch (state) {
    case 'RESTARTING':
      return 'SCHEDULED';
    default:
      return state;
  }
}

/** Builds `GET /jobs`: Floe serves one job per runner. */
export function jobList(overview: JobOverview): JobIdsWithStatusOverview {
  return { jobs: [{ id: overview.jid, status: overview.state }] };
}

/** Builds `GET /jobs/:id` from the runner's overview; `now` is the answer's timestamp. */
export function jobDetails(overview: JobOverview, now: number): JobDetailsInfo {
  const end = overview.endTime ?? -1;
  const duration = Math.max(0, (overview.endTime ?? now) - overview.startTime);
  const status = vertexStatus(overview.state);
  const vertices: JobVertexDetailsInfo[] = overview.vertices.map((v) => ({
    id: v.id,
    name: v.name,
    maxParallelism: overview.maxParallelism,
    parallelism: v.parallelism,
    status,
    'start-time': overview.startTime,
    'end-time': end,
    duration,
    tasks: { [status]: v.parallelism },
    metrics: {
      'read-bytes': 0,
      'read-bytes-complete': true,
      'write-bytes': 0,
      'write-bytes-complete': true,
      'read-records': v.recordsIn,
      'read-records-complete': true,
      'write-records': v.recordsOut,
      'write-records-complete': true,
    },
  }));
  const timestamps: Record<string, number> = { CREATED: overview.startTime, RUNNING: overview.startTime };
  if (overview.endTime !== undefined) timestamps[overview.state] = overview.endTime;
  return {
    jid: overview.jid,
    name: overview.name,
    isStoppable: overview.state === 'RUNNING',
    state: overview.state,
    'job-type': 'STREAMING',
    'start-time': overview.startTime,
    'end-time': end,
    duration,
    maxParallelism: overview.maxParallelism,
    now,
    timestamps,
    vertices,
    'status-counts': { [status]: vertices.length },
    restarts: overview.restarts,
    ...(overview.failureCause !== undefined ? { 'failure-cause': overview.failureCause } : {}),
    ...(overview.quietSince !== undefined ? { 'quiet-since': overview.quietSince } : {}),
  };
}
