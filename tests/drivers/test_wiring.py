"""Configuration selects the adapter behind each port."""

from __future__ import annotations

from pathlib import Path

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.access.local import LocalQueueAccess
from tenantops.drivers.access.redis import RedisQueueAccess
from tenantops.drivers.actions import local_drivers


def test_queue_access_is_local_by_default_and_redis_when_configured(
    db: Database, tmp_path: Path
) -> None:
    assert isinstance(local_drivers(Settings(data_dir=tmp_path), db).access, LocalQueueAccess)
    configured = Settings(
        data_dir=tmp_path,
        access={"adapter": "redis", "redis": {"url": "redis://127.0.0.1:6379/0"}},
    )
    access = local_drivers(configured, db).access
    assert isinstance(access, RedisQueueAccess)
    access.close()


def test_the_redis_url_is_a_secret_in_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        access={"adapter": "redis", "redis": {"url": "redis://ops:hunter2@10.0.0.1:6379/0"}},
    )
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.model_dump_json()


def test_secret_stores_are_local_by_default_and_vault_when_configured(
    db: Database, tmp_path: Path
) -> None:
    from tenantops.drivers.secrets.local import LocalSecrets
    from tenantops.drivers.secrets.vault import VaultSecretStore

    assert isinstance(local_drivers(Settings(data_dir=tmp_path), db).secrets, LocalSecrets)
    configured = Settings(
        data_dir=tmp_path,
        secrets={"adapter": "vault", "vault": {"url": "http://127.0.0.1:8200", "token": "hvs.x"}},
    )
    store = local_drivers(configured, db).secrets
    assert isinstance(store, VaultSecretStore)
    store.close()


def test_identity_is_local_by_default_keycloak_or_entra_when_configured(
    db: Database, tmp_path: Path
) -> None:
    from tenantops.drivers.identity.entra import EntraIdentity
    from tenantops.drivers.identity.keycloak import KeycloakIdentity
    from tenantops.drivers.identity.local import LocalIdentity

    assert isinstance(local_drivers(Settings(data_dir=tmp_path), db).identity, LocalIdentity)
    keycloak = Settings(
        data_dir=tmp_path,
        identity={
            "adapter": "keycloak",
            "keycloak": {
                "server_url": "https://sso.example",
                "realm": "platform",
                "client_id": "tenantops",
                "client_secret": "kc-secret",
            },
        },
    )
    found = local_drivers(keycloak, db).identity
    assert isinstance(found, KeycloakIdentity)
    found.close()
    entra = Settings(
        data_dir=tmp_path,
        identity={
            "adapter": "entra",
            "entra": {"tenant_id": "contoso", "client_id": "app", "client_secret": "e-secret"},
        },
    )
    found_entra = local_drivers(entra, db).identity
    assert isinstance(found_entra, EntraIdentity)
    found_entra.close()
