"""Fleetweb's agent: runs in a member cluster that Fleetweb cannot reach, connects only out to the hub over HTTPS,
and carries out there what the hub's member port asks (see fleetagent.agent). No Django, no project import: it
needs only urllib3 and cryptography, and its image is built from Dockerfile.agent."""

VERSION = "0.1.0"
