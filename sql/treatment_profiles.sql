-- Treatment profiles: the element-wise median over a treatment's wells, DMSO dropped.
-- Grain: (feature_source, postprocessing, compound, concentration).
-- batch is the treatment's batch string: its wells' distinct Weeks, sorted, comma-joined.
with
wells as (select * from well_profiles_normalized),
treated as (
    select * from wells
    where compound <> 'DMSO'
),
grouped as (
    select
        feature_source, postprocessing, compound, concentration,
        any_value(moa) as moa,
        array_to_string(list_sort(list_distinct(list(batch))), ',') as batch,
        count(*) as n_wells,
        list(features) as well_vectors
    from treated
    group by feature_source, postprocessing, compound, concentration
),
medians as (
    select
        * exclude (well_vectors),
        -- feature i: the median of the wells' i-th values
        list_transform(
            range(1, len(well_vectors[1]) + 1),
            lambda i: list_median(list_transform(well_vectors, lambda w: w[i]))::float
        ) as features
    from grouped
)
select
    feature_source, postprocessing, compound, concentration, moa, batch, n_wells, features
from medians
order by feature_source, postprocessing, compound, concentration
