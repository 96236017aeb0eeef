"""People: teams and who is in them, the one permission check (`access.can` / `require`) and the scopes it draws
from teams, single sign-on (identity provider groups mapped to team roles), and API tokens.

One domain, as a subpackage of inventory rather than an app of its own: a team's scope is a selector over
clusters (so it cannot sit below inventory), and every inventory read and write is scoped and checked by it (so it
cannot sit above). Its pages (`inventory/team_views.py`, `sso_views.py`, `token_views.py`) sit beside the other
inventory pages, over it. The token and service-account tables stay in the fleetweb app, where they were created.
"""
