"""The pipeline: durable jobs that carry an item from ingest to the measured reply.

See :mod:`bot.pipeline.flow` for the order of the stages in one place.
"""
