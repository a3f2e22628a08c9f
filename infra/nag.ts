import { Stack, Validations, type CfnElement } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** Acknowledges cdk-nag findings on a construct and its children, each with the reason it is acceptable here. */
export function acknowledge(scope: IConstruct, findings: readonly { readonly id: string; readonly reason: string }[]): void {
  for (const f of findings) Validations.of(scope).acknowledge({ id: f.id, reason: f.reason });
}

/** How cdk-nag writes `Fn::GetAtt <resource>.<attribute>` inside a finding id, e.g. `<BucketABC123.Arn>`. */
export function nagRef(resource: IConstruct, attribute = 'Arn'): string {
  const element = (resource.node.defaultChild ?? resource) as CfnElement;
  return `<${Stack.of(resource).resolve(element.logicalId) as string}.${attribute}>`;
}
