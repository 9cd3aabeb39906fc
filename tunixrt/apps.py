from django.apps import AppConfig


class TunixrtConfig(AppConfig):
    """The project itself: dashboard, health, account pages and set-up commands."""

    name = "tunixrt"
    verbose_name = "tunix-rt"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from tunixrt import (
            openapi,  # noqa: F401 - registers the schema extension
            workers,  # noqa: F401 - connects the worker heartbeat
        )
        from tunixrt.authentication import forget_tokens
        from tunixrt.models import ApiToken

        # What an API token stands for changed: a token issued or deleted, a user saved
        # (deactivated) or deleted, a role group's members or the group itself.
        user_model = get_user_model()
        for sender in (ApiToken, user_model, Group):
            post_save.connect(forget_tokens, sender=sender, dispatch_uid=f"forget-tokens-save-{sender.__name__}")
            post_delete.connect(forget_tokens, sender=sender, dispatch_uid=f"forget-tokens-delete-{sender.__name__}")
        m2m_changed.connect(forget_tokens, sender=user_model.groups.through, dispatch_uid="forget-tokens-groups")
