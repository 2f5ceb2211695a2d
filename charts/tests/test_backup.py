"""The scheduled backup: a CronJob running `walletctl backup` into its own volume."""

from __future__ import annotations

import pytest

from conftest import NAMESPACE, render
from test_chart import SECURED, policy_rules, secret_files

BACKUP = {"backup": {"enabled": True, "keep": 5, "schedule": "15 4 * * *"}}


def backup_objects(rendered) -> list[dict]:
    return [d for d in rendered.docs if d["metadata"]["name"].endswith("-backup")]


def job_pod(rendered) -> dict:
    return rendered.one("CronJob", "-backup")["spec"]["jobTemplate"]["spec"]["template"]


def test_backup_is_off_by_default():
    rendered = render()
    assert backup_objects(rendered) == []
    _, rules = policy_rules(rendered, "write")
    components = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peers in rules.values()
        for peer in peers
        if "podSelector" in peer
    }
    assert "backup" not in components


def test_backup_runs_walletctl_against_the_write_service_into_its_volume():
    rendered = render(BACKUP)
    cron = rendered.one("CronJob", "-backup")
    assert cron["spec"]["schedule"] == "15 4 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert "timeZone" not in cron["spec"]
    pod = job_pod(rendered)["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["command"] == ["/usr/local/bin/walletctl"]
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["backups"]
    assert c["args"] == ["backup", f"--under={mount}", "--keep=5"]
    env = {e["name"]: e["value"] for e in c["env"]}
    client = rendered.one("Service", "-write")
    assert env == {"WALLET_ENDPOINTS": f"{client['metadata']['name']}.{NAMESPACE}.svc.cluster.local:50051"}
    claim = rendered.one("PersistentVolumeClaim", "-backup")
    (volume,) = [v for v in pod["volumes"] if v["name"] == "backups"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "storageClassName" not in claim["spec"]
    # Uninstalling the release keeps the backups.
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_backup_pods_may_reach_the_write_nodes():
    rendered = render(BACKUP)
    labels = job_pod(rendered)["metadata"]["labels"]
    _, rules = policy_rules(rendered, "write")
    port = rendered.values["writeNode"]["port"]
    admitted = [peer["podSelector"]["matchLabels"] for peer in rules[port] if "podSelector" in peer]
    assert any(selector.items() <= labels.items() and selector["app.kubernetes.io/component"] == "backup"
               for selector in admitted)


def test_secured_backup_gets_the_ca_and_the_replicate_token():
    rendered = render(SECURED | BACKUP)
    pod = job_pod(rendered)["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["WALLET_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "wallet-auth", "key": "read-node.token"}
    files = secret_files(pod, c)
    assert files[env["WALLET_TLS_CA"]["value"]] == ("wallet-read-tls", "ca.crt")
    assert files[env["WALLET_CLIENT_CERT"]["value"]] == ("wallet-read-tls", "tls.crt")
    assert files[env["WALLET_CLIENT_KEY"]["value"]] == ("wallet-read-tls", "tls.key")


def test_backup_volume_class_and_time_zone_are_passed_on():
    values = {"backup": BACKUP["backup"] | {"timeZone": "Europe/Paris",
                                            "persistence": {"size": "5Gi", "storageClassName": "fast"}}}
    rendered = render(values)
    assert rendered.one("CronJob", "-backup")["spec"]["timeZone"] == "Europe/Paris"
    claim = rendered.one("PersistentVolumeClaim", "-backup")["spec"]
    assert (claim["storageClassName"], claim["resources"]["requests"]["storage"]) == ("fast", "5Gi")


@pytest.mark.parametrize("schedule", ["0 3 * * *", "*/15 * * * *", "0 3 * * MON-FRI", "@daily"])
def test_schema_accepts_cron_schedules(schedule):
    rendered = render({"backup": {"enabled": True, "schedule": schedule}})
    assert rendered.one("CronJob", "-backup")["spec"]["schedule"] == schedule
