from mandate_vault_shared.serve import run_service
from mandate_vault_worker.main import DISTRIBUTION, SERVICE_NAME, create_app
from mandate_vault_worker.settings import WorkerSettings


def main() -> None:
    run_service(
        service=SERVICE_NAME,
        distribution=DISTRIBUTION,
        settings_type=WorkerSettings,
        app_factory=create_app,
    )


if __name__ == "__main__":
    main()
