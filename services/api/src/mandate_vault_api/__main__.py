from mandate_vault_api.main import DISTRIBUTION, SERVICE_NAME, create_app
from mandate_vault_api.settings import ApiSettings
from mandate_vault_shared.serve import run_service


def main() -> None:
    run_service(
        service=SERVICE_NAME,
        distribution=DISTRIBUTION,
        settings_type=ApiSettings,
        app_factory=create_app,
    )


if __name__ == "__main__":
    main()
