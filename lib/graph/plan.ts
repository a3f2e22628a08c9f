import type { Job, LogicalNode, Partitioning } from '../api/job.js';
import type { KeySelector } from '../api/functions.js';
import { isStateful, validateJob, type PlanOverrides } from './validate.js';
import { murmur3 } from './key-groups.js';

/** An operator placed in a vertex. */
export interface PlannedOperator {
  /** The user's uid, or a generated one for stateless operators without one. */
  readonly uid: string;
  readonly node: LogicalNode;
  readonly stateful: boolean;
}

/** An edge between vertices. */
export interface VertexEdge {
  readonly from: string;
  readonly to: string;
  readonly partitioning: Partitioning;
  readonly key?: KeySelector<unknown, unknown>;
}

/** A chain of operators run together by each subtask, fed by one input queue. */
export interface Vertex {
  /** The head operator's uid; names the vertex's queue and channels. */
  readonly id: string;
  readonly name: string;
  readonly operators: readonly PlannedOperator[];
  readonly parallelism: number;
  readonly inputs: readonly VertexEdge[];
  readonly outputs: readonly VertexEdge[];
  readonly isSource: boolean;
  readonly isSink: boolean;
}

/** The physical plan: vertices in topological order. */
export interface PhysicalPlan {
  readonly job: string;
  readonly maxParallelism: number;
  readonly vertices: readonly Vertex[];
  /** Hash of the topology (uids, edges, partitioning), recorded in manifests. */
  readonly fingerprint: string;
}

function chainable(job: Job, node: LogicalNode, parallelismOf: (n: LogicalNode) => number, consumerCount: Map<number, number>): boolean {
  if (node.inputs.length !== 1) return false;
  const edge = node.inputs[0]!;
  if (edge.partitioning !== 'forward') return false;
  const upstream = job.nodes[edge.from]!;
  if (upstream.spec.kind === 'sink') return false;
  return consumerCount.get(upstream.id) === 1 && parallelismOf(upstream) === parallelismOf(node);
}

/** Validates a job and turns it into vertices: forward-connected operators of equal parallelism are chained into one vertex. */
export function buildPlan(job: Job, overrides: PlanOverrides = {}): PhysicalPlan {
  validateJob(job, overrides);
  const maxParallelism = job.options.maxParallelism ?? 128;
  const defaultParallelism = overrides.parallelism ?? job.options.parallelism ?? 1;
  const parallelismOf = (n: LogicalNode) => n.parallelism ?? defaultParallelism;
  const uidOf = (n: LogicalNode) => n.uid ?? `${n.spec.kind}-${n.id}`;
  const consumerCount = new Map<number, number>();
  for (const n of job.nodes) for (const e of n.inputs) consumerCount.set(e.from, (consumerCount.get(e.from) ?? 0) + 1);

  // Nodes are added in topological order (an operator only reads streams that exist), so one pass chains them.
  const vertexOfNode = new Map<number, { ops: LogicalNode[] }>();
  const chains: { ops: LogicalNode[] }[] = [];
  for (const node of job.nodes) {
    if (chainable(job, node, parallelismOf, consumerCount)) {
      const chain = vertexOfNode.get(node.inputs[0]!.from)!;
      chain.ops.push(node);
      vertexOfNode.set(node.id, chain);
    } else {
      const chain = { ops: [node] };
      chains.push(chain);
      vertexOfNode.set(node.id, chain);
    }
  }

  const vertexId = (nodeId: number) => uidOf(vertexOfNode.get(nodeId)!.ops[0]!);
  const edges: VertexEdge[] = [];
  for (const chain of chains) {
    const head = chain.ops[0]!;
    for (const e of head.inputs) {
      const upstream = job.nodes[e.from]!;
      const partitioning: Partitioning = e.partitioning === 'forward' && parallelismOf(upstream) !== parallelismOf(head) ? 'rebalance' : e.partitioning;
      edges.push({ from: vertexId(e.from), to: uidOf(head), partitioning, key: e.key });
    }
  }
  const vertices: Vertex[] = chains.map((chain) => {
    const head = chain.ops[0]!;
    const id = uidOf(head);
    return {
      id,
      name: chain.ops.map((o) => o.name).join(' -> '),
      operators: chain.ops.map((node) => ({ uid: uidOf(node), node, stateful: isStateful(node) })),
      parallelism: parallelismOf(head),
      inputs: edges.filter((e) => e.to === id),
      outputs: edges.filter((e) => e.from === id),
      isSource: head.spec.kind === 'source',
      isSink: chain.ops[chain.ops.length - 1]!.spec.kind === 'sink',
    };
  });
  const topology = vertices.map((v) => `${v.operators.map((o) => o.uid).join('>')}|${v.outputs.map((e) => `${e.to}:${e.partitioning}`).join(',')}`).join(';');
  return { job: job.name, maxParallelism, vertices, fingerprint: murmur3(topology).toString(16).padStart(8, '0') };
}

/** Input channels of one subtask, as `<vertex>:<subtask>` of the senders. Sources read from the coordinator's channel. */
export function inputChannels(plan: PhysicalPlan, vertex: Vertex, subtask: number): string[] {
  if (vertex.isSource) return ['$coordinator:0'];
  const out: string[] = [];
  for (const e of vertex.inputs) {
    const from = plan.vertices.find((v) => v.id === e.from)!;
    if (e.partitioning === 'forward') out.push(`${from.id}:${subtask}`);
    else for (let i = 0; i < from.parallelism; i++) out.push(`${from.id}:${i}`);
  }
  return [...new Set(out)];
}

/** Looks a vertex up by id. */
export function vertexById(plan: PhysicalPlan, id: string): Vertex {
  const v = plan.vertices.find((x) => x.id === id);
  if (!v) throw new Error(`no vertex '${id}' in the plan of job '${plan.job}'`);
  return v;
}

/**
 * Whether a vertex's operators may register processing-time timers (a keyed process function): on AWS such a vertex
 * is woken when a timer is due, since nothing else steps a subtask that receives no input.
 */
export function hasProcessingTimers(vertex: Vertex): boolean {
  return vertex.operators.some((o) => o.node.spec.kind === 'keyedProcess');
}
