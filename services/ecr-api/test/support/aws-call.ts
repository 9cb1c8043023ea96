/** One AWS call as the SDK sent it. */
export interface AwsCall {
  /** The AWS operation: from X-Amz-Target (JSON protocols) or Action= (query protocol). */
  operation: string;
  /** Request parameters: the JSON body, or the form fields. */
  params: Record<string, unknown>;
  /** JSON (ECR, the tagging API) or query (STS, IAM): the protocol its answer must speak. */
  protocol: 'json' | 'query';
}

/** Names the call from its X-Amz-Target header and body; `request` stands in for a missing Action. */
export function describeAwsCall(target: string | string[] | undefined, body: string, request: string): AwsCall {
  if (typeof target === 'string') {
    return {
      operation: target.split('.').pop() ?? target,
      params: body ? (JSON.parse(body) as Record<string, unknown>) : {},
      protocol: 'json',
    };
  }
  const params: Record<string, unknown> = Object.fromEntries(new URLSearchParams(body));
  return { operation: typeof params.Action === 'string' ? params.Action : request, params, protocol: 'query' };
}
