from mandate_vault_shared.serve import run_service
from mandate_vault_verifier.main import DISTRIBUTION, SERVICE_NAME, create_app
from mandate_vault_verifier.settings import VerifierSettings


def main() -> None:
    run_service(
        service=SERVICE_NAME,
        distribution=DISTRIBUTION,
        settings_type=VerifierSettings,
        app_factory=create_app,
    )


if __name__ == "__main__":
    main()
