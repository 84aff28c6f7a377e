from celery import shared_task

from profiles import maintenance


@shared_task(ignore_result=True)
def repoint_merged_events_task(site_id: int | None = None) -> int:
    """Move the events of merged identified profiles to their targets, in batches."""
    return maintenance.merged_events_repoint(site_id=site_id)


@shared_task(ignore_result=True)
def purge_anonymous_profiles_task(batch: int = 500, max_batches: int = 20) -> int:
    """Delete anonymous profiles (and their events) idle past their site's retention."""
    return maintenance.anonymous_profiles_purge(batch=batch, max_batches=max_batches)
