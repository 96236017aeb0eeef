"""A person's API tokens and admins' service accounts (un-namespaced: `my_tokens`, `token_revoke`,
`service_account_create`), the People pages and the public set-password page."""

from django.urls import path

from inventory import people_views, token_views

urlpatterns = [
    path("accounts/tokens/", token_views.my_tokens, name="my_tokens"),
    path("accounts/tokens/<int:pk>/revoke/", token_views.revoke, name="token_revoke"),
    path("accounts/service-accounts/", token_views.service_account_create, name="service_account_create"),
    path("accounts/set-password/<str:uidb64>/<str:token>/", people_views.set_password, name="set_password"),
    path("people/", people_views.people_list, name="people_list"),
    path("people/new/", people_views.person_create, name="person_create"),
    path("people/<str:username>/", people_views.person_detail, name="person_detail"),
    path("people/<str:username>/active/", people_views.person_active, name="person_active"),
    path("people/<str:username>/password-link/", people_views.person_password_link, name="person_password_link"),
    path("people/<str:username>/teams/", people_views.person_team_add, name="person_team_add"),
    path("people/<str:username>/teams/<int:pk>/remove/", people_views.person_team_remove,
         name="person_team_remove"),
]
