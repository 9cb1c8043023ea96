import { IAMClient } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { motoEndpoint, REGION } from './app.js';

/** An IAM client of the account, straight to moto (not through the service): test setup and checks. */
export async function directIam(account: string): Promise<IAMClient> {
  const endpoint = motoEndpoint();
  const sts = new STSClient({ region: REGION, endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
  const out = await sts.send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::${account}:role/test-admin`, RoleSessionName: 'test' }));
  const c = out.Credentials!;
  return new IAMClient({
    region: REGION,
    endpoint,
    credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! },
  });
}
