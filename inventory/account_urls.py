"""A person's API tokens and admins' service accounts (un-namespaced: `my_tokens`, `token_revoke`,
`service_account_create`)."""

from django.urls import path

from inventory import token_views

urlpatterns = [
    path("accounts/tokens/", token_views.my_tokens, name="my_tokens"),
    path("accounts/tokens/<int:pk>/revoke/", token_views.revoke, name="token_revoke"),
    path("accounts/service-accounts/", token_views.service_account_create, name="service_account_create"),
]
