"""Everything that talks to Postgres or Redis: the check path's record lookup and caches, the
check store, invalidation, last-used writes, connections, migrations, and the usage SQL.
"""
