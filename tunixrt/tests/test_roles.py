"""Roles: how a user's role is found, granted, migrated in, shown in the admin, and refused with a reason."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from traces.tests.factories import make_trace
from tunixrt.roles import Action, Role, can, grant, role_of
from tunixrt.tests.role_support import CsrfClient, html, token_client

pytestmark = pytest.mark.django_db


def groups_of(user) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def run_command(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_a_user_in_no_role_group_is_a_viewer(django_user_model):
    nobody = django_user_model.objects.create_user("newcomer", password="x")
    assert role_of(nobody) == Role.VIEWER
    assert can(nobody, Action.VIEW)
    assert not can(nobody, Action.CREATE)


def test_the_highest_role_group_wins(django_user_model):
    both = django_user_model.objects.create_user("both", password="x")
    both.groups.add(Group.objects.get_or_create(name="viewer")[0], Group.objects.get_or_create(name="maintainer")[0])
    assert role_of(both) == Role.MAINTAINER


def test_a_superuser_is_a_maintainer_without_any_group(django_user_model, other_member):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    assert groups_of(root) == set()
    assert role_of(root) == Role.MAINTAINER
    assert can(root, Action.PROMOTE) and can(root, Action.BASELINES)
    assert can(root, Action.CHANGE, make_trace(created_by=other_member))
    assert can(root, Action.CHANGE, make_trace())  # owned by nobody


def test_an_inactive_user_may_do_nothing(django_user_model):
    gone = django_user_model.objects.create_user("gone", password="x", is_active=False)
    grant(gone, Role.MAINTAINER)
    assert role_of(gone) == Role.NONE
    assert not can(gone, Action.VIEW)


def test_the_role_is_looked_up_once_per_user_object(user, django_assert_num_queries, django_user_model):
    with django_assert_num_queries(1):
        assert role_of(user) == Role.MEMBER
        assert can(user, Action.CREATE) and not can(user, Action.PROMOTE)
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    with django_assert_num_queries(0):
        assert role_of(root) == Role.MAINTAINER


def test_a_page_costs_one_role_query(user, client, django_assert_max_num_queries):
    """Reads never ask for the role; the buttons of a page ask once, however many there are."""
    client.force_login(user)
    trace = make_trace(created_by=user)
    # 10: the page's own reads, including one index lookup each for the previous and next trace.
    with django_assert_max_num_queries(10) as queries:
        assert client.get(f"/traces/{trace.pk}/").status_code == 200
    group_queries = [q["sql"] for q in queries.captured_queries if "auth_group" in q["sql"]]
    assert len(group_queries) == 1, group_queries


def test_grant_role_puts_the_user_in_exactly_one_role_group(user):
    assert groups_of(user) == {"member"}
    out = run_command("grant_role", "alice", "maintainer")
    assert "alice is now a maintainer." in out
    user.refresh_from_db()
    assert groups_of(user) == {"maintainer"}
    run_command("grant_role", "alice", "viewer")
    assert groups_of(user) == {"viewer"}


def test_grant_role_keeps_groups_that_are_not_roles(user):
    team = Group.objects.create(name="team-nlp")
    user.groups.add(team)
    run_command("grant_role", "alice", "viewer")
    assert groups_of(user) == {"viewer", "team-nlp"}


def test_grant_role_recreates_a_missing_role_group(user):
    Group.objects.filter(name="maintainer").delete()
    run_command("grant_role", "alice", "maintainer")
    assert role_of(type(user).objects.get(pk=user.pk)) == Role.MAINTAINER


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("grant_role", "nobody", "member"), "No user 'nobody'."),
        (("grant_role", "alice"), "Give a username and a role"),
        (("grant_role", "alice", "owner"), "invalid choice: 'owner'"),
        (("grant_role", "alice", "--list"), "--list takes no username."),
    ],
)
def test_grant_role_refuses_bad_input(user, args, message):
    with pytest.raises(CommandError, match=message):
        call_command(*args)


def test_grant_role_list_shows_everyones_role(user, viewer, maintainer, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    django_user_model.objects.create_user("norole", password="x")
    django_user_model.objects.create_user("left", password="x", is_active=False)
    lines = run_command("grant_role", "--list").splitlines()
    assert lines == [
        "alice\tmember",
        "left\tnone (inactive)",
        "maya\tmaintainer",
        "norole\tviewer",
        "root\tmaintainer (superuser)",
        "victor\tviewer",
    ]


def test_ensure_admin_creates_a_maintainer(db):
    run_command("ensure_admin", "--username", "boss")
    assert "boss\tmaintainer (superuser)" in run_command("grant_role", "--list")


@pytest.mark.django_db(transaction=True)
def test_the_migration_makes_every_existing_active_user_a_member(django_user_model):
    executor = MigrationExecutor(connection)
    executor.migrate([("tunixrt", "0002_hash_plaintext_tokens")])
    Group.objects.filter(name__in=["viewer", "member", "maintainer"]).delete()  # as before the upgrade
    alice = django_user_model.objects.create_user("alice", password="x")
    gone = django_user_model.objects.create_user("gone", password="x", is_active=False)
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    before = {u.username: role_of(u) for u in (alice, root)}

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    try:
        executor.migrate([("tunixrt", "0003_role_groups")])
        _check_the_upgrade(django_user_model, alice, gone, root, before)
    finally:
        # Back to the latest schema: the tests after this one need the later tables (worker heartbeats).
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _check_the_upgrade(django_user_model: Any, alice: Any, gone: Any, root: Any, before: dict[str, Any]) -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {"viewer", "member", "maintainer"}
    assert before == {"alice": Role.VIEWER, "root": Role.MAINTAINER}
    assert groups_of(alice) == {"member"}
    assert role_of(django_user_model.objects.get(pk=alice.pk)) == Role.MEMBER
    assert groups_of(gone) == set()
    assert groups_of(root) == set()  # a maintainer already, as a superuser
    newcomer = django_user_model.objects.create_user("newcomer", password="x")
    assert role_of(newcomer) == Role.VIEWER  # users created after the upgrade start as viewers


def test_the_admin_lists_the_role_groups_and_each_users_role(admin_client, user, viewer):
    # The migration creates the groups, but a transactional test that ran before this one flushed them.
    for name in ("viewer", "member", "maintainer"):
        Group.objects.get_or_create(name=name)
    groups = html(admin_client.get("/admin/auth/group/"))
    for name in ("viewer", "member", "maintainer"):
        assert f">{name}</a>" in groups
    users = html(admin_client.get("/admin/auth/user/"))
    assert '<td class="field-role">member</td>' in users
    assert '<td class="field-role">viewer</td>' in users
    assert '<td class="field-role">maintainer</td>' in users  # admin_client's superuser


def test_the_header_shows_the_users_role(viewer):
    assert '<span class="muted" id="role" title="your role">viewer</span>' in html(CsrfClient(viewer).get("/"))


@pytest.mark.parametrize("debug", [True, False])
def test_a_refused_api_call_is_a_json_403_naming_the_role_needed(viewer, debug):
    with override_settings(DEBUG=debug):
        response = token_client(viewer).post("/api/traces", {}, format="json")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Creating, launching and evaluating needs the member role; you are a viewer."}


@pytest.mark.parametrize("debug", [True, False])
def test_a_refused_page_is_a_403_page_naming_the_role_needed(viewer, debug):
    with override_settings(DEBUG=debug):
        response = CsrfClient(viewer).get("/traces/upload/")
    assert response.status_code == 403
    assert "Creating, launching and evaluating needs the member role; you are a viewer." in html(response)


def test_a_method_an_endpoint_lacks_is_still_a_405(user):
    trace = make_trace(created_by=user)
    assert token_client(user).put(f"/api/traces/{trace.pk}", {}, format="json").status_code == 405


def test_an_unknown_api_url_is_a_404_for_every_role(viewer):
    assert token_client(viewer).post("/api/no-such-thing", {}, format="json").status_code == 404


class Undeclared(APIView):
    """An endpoint whose author forgot to declare what its POST does."""

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True})


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("member", 403), ("maintainer", 200)])
def test_an_undeclared_write_is_for_maintainers_only(request, role, status):
    user = request.getfixturevalue(role)
    factory = APIRequestFactory()
    post = factory.post("/api/undeclared", {}, format="json")
    force_authenticate(post, user)
    assert Undeclared.as_view()(post).status_code == status
    get = factory.get("/api/undeclared")
    force_authenticate(get, user)
    assert Undeclared.as_view()(get).status_code == 200


def test_the_schema_documents_the_role_403_on_writes_only(api):
    paths = api.get("/api/schema/", {"format": "json"}).json()["paths"]
    assert "role" in paths["/api/runs/{id}/cancel"]["post"]["responses"]["403"]["description"]
    assert "role" not in paths["/api/runs"]["get"]["responses"]["403"]["description"]
