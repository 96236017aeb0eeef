"""Where an application's manifests come from besides pasted YAML: a Git repository (`git`), a Helm chart repository
or an OCI registry (`charts`), fetched within limits into a temporary folder (`tree`) and rendered there, boxed
(`render`)."""
