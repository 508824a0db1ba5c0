"""dbt-duckdb plugin: every dbt connection can read the S3 lake and attach the warehouse, offline.

Named in dbt_project/profiles.yml; dbt-duckdb calls `configure_connection` before it attaches.
"""

from dbt.adapters.duckdb.plugins import BasePlugin

from stock_pipeline.resources.warehouse import Catalog, attach_lake


class Plugin(BasePlugin):
    def configure_connection(self, conn):
        attach_lake(conn)
        for attachment in self.creds.attach or []:
            if attachment.path.startswith("ducklake:") and not attachment.read_only:
                kind, _, target = attachment.path.removeprefix("ducklake:").partition(":")
                Catalog(kind, target).prepare()
