"""Renderers: plain functions from a plan or a run record to text."""
