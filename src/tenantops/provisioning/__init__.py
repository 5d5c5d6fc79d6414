"""Provisioning: a tenant's Kubernetes manifests, rendered, validated and committed by GitOps.

``manifests`` renders a :class:`TenantSpec` (a value object, never an ORM row)
into files of an Argo CD app-of-apps layout; ``validation`` checks every
manifest before anything is committed; ``actions`` are the ``gitops.*`` runbook
actions that put both through the GitOps port.
"""
