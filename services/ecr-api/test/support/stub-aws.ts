import { describeAwsCall } from './aws-call.js';

/**
 * Canned AWS answers for the paths moto cannot emulate (several pages, throttling, AssumeRole
 * denied, AWS faults). It replaces only the SDK's HTTP layer: the real clients still build, sign,
 * retry and parse every call, and the service code runs unchanged.
 */

type Service = 'sts' | 'ecr' | 'tagging';

export interface StubCall {
  service: Service;
  operation: string;
  params: Record<string, unknown>;
}

export type StubReply =
  | { json: unknown; status?: number }
  | { awsError: string; message?: string; status?: number }
  | { xml: string; status?: number }
  | { networkError: string };

export type StubRoute = (params: Record<string, unknown>, call: StubCall, nth: number) => StubReply | Promise<StubReply>;

export const STUB_SECRET = 'StubSecretAccessKey/Assumed+0123456789abcdefABCD';
export const STUB_SESSION_TOKEN = 'FQoGZXIvYXdzEStubSessionToken0123456789abcdefABCDEFGHIJKLMNOPQRSTUVWXYZ+/=';
export const STUB_ACCESS_KEY = 'ASIASTUBASSUMEDKEY01';

export function assumeRoleXml(opts: { expiration?: Date } = {}): StubReply {
  const expiration = (opts.expiration ?? new Date(Date.now() + 3600_000)).toISOString();
  return {
    xml: `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>
<AccessKeyId>${STUB_ACCESS_KEY}</AccessKeyId><SecretAccessKey>${STUB_SECRET}</SecretAccessKey>
<SessionToken>${STUB_SESSION_TOKEN}</SessionToken><Expiration>${expiration}</Expiration></Credentials>
<AssumedRoleUser><AssumedRoleId>AROASTUB:ecr-api</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/r/ecr-api</Arn></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></AssumeRoleResponse>`,
  };
}

export function stsError(code: string, message: string, status = 403): StubReply {
  return {
    status,
    xml: `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>stub</RequestId></ErrorResponse>`,
  };
}

interface HttpRequestLike {
  method: string;
  hostname?: string;
  path?: string;
  headers: Record<string, string>;
  body?: unknown;
}

export class StubAws {
  readonly calls: StubCall[] = [];
  private readonly seen = new Map<string, number>();

  constructor(private readonly routes: Record<string, StubRoute>) {}

  count(operation: string): number {
    return this.calls.filter((c) => c.operation === operation).length;
  }

  // The SDK's HttpHandler interface.
  updateHttpClientConfig(): void {}
  httpHandlerConfigs(): Record<string, never> {
    return {};
  }
  destroy(): void {}

  // async without await: the SDK's handler interface answers a promise, and a canned network error is its rejection.
  async handle(request: HttpRequestLike): Promise<{ response: { statusCode: number; headers: Record<string, string>; body: Uint8Array } }> {
    const header = (name: string) => Object.entries(request.headers).find(([k]) => k.toLowerCase() === name)?.[1];
    // Read the bytes as Node's HTTP handler sends them (the SDK's body objects warn on string methods).
    const body = request.body;
    const text =
      typeof body === 'string'
        ? body
        : body instanceof Uint8Array
          ? Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')
          : '';
    const target = header('x-amz-target');
    const { operation, params, protocol } = describeAwsCall(target, text, `${request.method} ${request.path}`);
    const service: Service = protocol === 'query' ? 'sts' : target?.startsWith('ResourceGroupsTagging') ? 'tagging' : 'ecr';
    const call: StubCall = { service, operation, params };
    this.calls.push(call);
    const nth = (this.seen.get(call.operation) ?? 0) + 1;
    this.seen.set(call.operation, nth);
    const route = this.routes[call.operation];
    const reply: StubReply = route
      ? await route(call.params, call, nth)
      : { awsError: 'UnknownOperationException', message: `no stub for ${call.operation}`, status: 400 };

    if ('networkError' in reply) throw Object.assign(new Error(`connect ${reply.networkError}`), { code: reply.networkError });
    if ('xml' in reply) return respond(reply.status ?? 200, 'text/xml', reply.xml);
    if ('awsError' in reply) {
      return respond(
        reply.status ?? 400,
        'application/x-amz-json-1.1',
        JSON.stringify({ __type: reply.awsError, message: reply.message ?? reply.awsError }),
        {
          'x-amzn-errortype': reply.awsError,
        },
      );
    }
    return respond(reply.status ?? 200, 'application/x-amz-json-1.1', JSON.stringify(reply.json));
  }
}

function respond(statusCode: number, contentType: string, body: string, headers: Record<string, string> = {}) {
  return {
    response: {
      statusCode,
      headers: { 'content-type': contentType, 'x-amzn-requestid': 'stub', ...headers },
      body: new Uint8Array(Buffer.from(body)),
    },
  };
}
