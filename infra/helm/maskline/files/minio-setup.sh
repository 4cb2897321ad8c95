#!/bin/sh
# compose's minio-setup (and the Helm chart's setup job): the bucket, the folder Triton reads its
# model repository from, and one MinIO user per identity with the policy `maskline credentials`
# generated from keys.STORE_ACCESS. Idempotent: re-running it rotates nothing and breaks nothing;
# a changed secret file is applied (docs/deploy.md, rotating credentials).
set -eu
mc alias set maskline "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "maskline/$MINIO_BUCKET"
echo "Triton's model repository; infer writes it (MASKLINE_TRITON_REPOSITORY)" | mc pipe "maskline/$MINIO_BUCKET/triton/README"
for policy in /setup/policies/maskline-*.json; do
  user=$(basename "$policy" .json)
  identity=${user#maskline-}
  secret=$(cat "/setup/secrets/minio-$identity.secret")
  mc admin policy create maskline "$user" "$policy" >/dev/null
  mc admin user add maskline "$user" "$secret" >/dev/null
  mc admin policy attach maskline "$user" --user "$user" >/dev/null 2>&1 || true  # already attached
  echo "user $user: policy $user"
done
