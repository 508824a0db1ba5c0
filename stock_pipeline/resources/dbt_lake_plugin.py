"""dbt-duckdb plugin: every dbt connection can read the S3 lake, offline.

Named in dbt_project/profiles.yml; dbt-duckdb imports it and calls `configure_connection`.
"""

from dbt.adapters.duckdb.plugins import BasePlugin

from stock_pipeline.resources.warehouse import attach_lake


class Plugin(BasePlugin):
    def configure_connection(self, conn):
        attach_lake(conn)
