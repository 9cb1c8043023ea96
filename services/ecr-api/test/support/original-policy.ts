/** The original's SpinupECRAdminPolicy actions (its iam/policy.go), on the repository its user's tags name. */
export const ORIGINAL_USER_ACTIONS = [
  'ecr:PutLifecyclePolicy',
  'ecr:PutImageTagMutability',
  'ecr:DescribeImageScanFindings',
  'ecr:GetDownloadUrlForLayer',
  'ecr:GetAuthorizationToken',
  'ecr:UploadLayerPart',
  'ecr:BatchDeleteImage',
  'ecr:ListImages',
  'ecr:DeleteLifecyclePolicy',
  'ecr:PutImage',
  'ecr:BatchGetImage',
  'ecr:CompleteLayerUpload',
  'ecr:DescribeImages',
  'ecr:DeleteRegistryPolicy',
  'ecr:InitiateLayerUpload',
  'ecr:BatchCheckLayerAvailability',
];
