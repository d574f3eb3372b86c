-- Batch jobs of bulk sends were `deliver_email_batch` until SMS went through the same job
-- (0011): the job is `deliver_batch` now, with the same arguments. Jobs enqueued before the
-- upgrade take the new kind and unique key, so that a worker runs them (an unknown kind is
-- retried until discarded) and pause/resume/cancel find them. Finished ones follow, so that an
-- operator's retry of an old discarded batch runs too.
UPDATE jobs
   SET kind = 'deliver_batch',
       unique_key = 'deliver_batch' || substr(unique_key, length('deliver_email_batch') + 1)
 WHERE kind = 'deliver_email_batch';

UPDATE jobs_finished
   SET kind = 'deliver_batch',
       unique_key = 'deliver_batch' || substr(unique_key, length('deliver_email_batch') + 1)
 WHERE kind = 'deliver_email_batch';
