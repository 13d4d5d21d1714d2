import pulumi
import pulumi_kubernetes as k8s

labels = {"app": "web"}

deployment = k8s.apps.v1.Deployment(
    "web",
    spec={
        "selector": {"match_labels": labels},
        "replicas": 2,
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"container_port": 80}]}]},
        },
    },
)

service = k8s.core.v1.Service(
    "web",
    spec={"selector": labels, "ports": [{"port": 80, "target_port": 80}]},
)

pulumi.export("deployment", deployment.metadata["name"])
pulumi.export("service", service.metadata["name"])
