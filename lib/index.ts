/** Floe's public API: build a job, pick sources and sinks, run it embedded or on AWS. */
export { Job, DataStream, KeyedStream, WindowedStream, defineJob } from './api/job.js';
export type { JobOptions, JobFactory, WatermarkStrategy } from './api/job.js';
export type { Collector, KeyedContext, KeyedProcessFunction, OnTimerContext, ProcessFunction, AggregateFunction, ReduceFunction, TimerService, OperatorOptions } from './api/functions.js';
export { valueState, listState, mapState } from './api/state.js';
export type { ValueState, ListState, MapState } from './api/state.js';
export { tumblingEventTimeWindows, slidingEventTimeWindows } from './api/windows.js';
export type { TimeWindow } from './api/windows.js';
export type { SourceConnector, SinkConnector, SourceSplit, SinkWriter } from './api/connector.js';
export { generator } from './connectors/generator.js';
export { filesSource } from './connectors/files-source.js';
export { filesSink } from './connectors/files-sink.js';
export { sqsSource, type SqsSourceOptions, type SqsMessageInfo } from './connectors/sqs-source.js';
export { collectSink } from './connectors/collect-sink.js';
export { stdoutSink } from './connectors/stdout-sink.js';
export { EmbeddedRunner } from './embedded/embedded-runner.js';
export type { EmbeddedRunOptions, RunOutcome, RestoreSource } from './embedded/embedded-runner.js';
export { FloeError, ValidationError } from './core/errors.js';
export type { CheckpointOptions, RestartOptions } from './core/options.js';
