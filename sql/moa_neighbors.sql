-- Each annotated treatment's cosine nearest neighbour under the NSC and NSCB rules, and
-- the average precision of its whole ranking (positives: same MoA).
-- Grain: (feature_source, postprocessing, protocol, compound, concentration).
-- NSC: candidates are treatments of other compounds. NSCB: the MoAs Cholesterol-lowering
-- and Kinase inhibitors are left out, and candidates must also differ in batch string.
-- A zero-norm profile neither queries nor answers (cosine is undefined; DuckDB returns -1):
-- such a query, or one with no allowed candidate, keeps its row with a NULL neighbour
-- and counts as a miss. Ties go to the candidate first by (compound, concentration).
with
treatments as (select * from treatment_profiles),
protocols as (
    select * from (values ('nsc'), ('nscb')) as p(protocol)
),
labelled as (
    select *, features::double[] as vector
    from treatments
    where moa is not null
),
normed as (
    select *, sqrt(list_dot_product(vector, vector)) as norm
    from labelled
),
unit_vectors as (
    -- cosine similarity = dot product of unit vectors, normalised once per treatment
    select *, case when norm > 0 then list_transform(vector, lambda v: v / norm) end as unit
    from normed
),
queries as (
    select l.*, p.protocol
    from unit_vectors as l
    cross join protocols as p
    where p.protocol = 'nsc' or l.moa not in ('Cholesterol-lowering', 'Kinase inhibitors')
),
pairs as (
    select
        q.feature_source, q.postprocessing, q.protocol,
        q.compound, q.concentration, q.moa,
        c.compound as neighbor_compound,
        c.concentration as neighbor_concentration,
        c.moa as neighbor_moa,
        list_dot_product(q.unit, c.unit) as similarity,
        c.moa = q.moa as is_positive
    from queries as q
    join queries as c
        on c.feature_source = q.feature_source
        and c.postprocessing = q.postprocessing
        and c.protocol = q.protocol
        and c.compound <> q.compound
        and (q.protocol = 'nsc' or c.batch <> q.batch)
    where q.norm > 0 and c.norm > 0
),
ranked as (
    select
        *,
        row_number() over ranking as rank,
        sum(is_positive::integer) over (ranking rows unbounded preceding) as positives_so_far
    from pairs
    window ranking as (
        partition by feature_source, postprocessing, protocol, compound, concentration
        order by similarity desc, neighbor_compound, neighbor_concentration
    )
),
per_query as (
    select
        feature_source, postprocessing, protocol, compound, concentration,
        count(*) as n_candidates,
        -- mean in rank order: a parallel avg() adds in thread order (last-bit differences)
        list_avg(list(positives_so_far / rank order by rank) filter (where is_positive))
            as average_precision
    from ranked
    group by feature_source, postprocessing, protocol, compound, concentration
),
nearest as (
    select * from ranked where rank = 1
)
select
    q.feature_source, q.postprocessing, q.protocol, q.compound, q.concentration, q.moa,
    q.batch,
    n.neighbor_compound, n.neighbor_concentration, n.neighbor_moa, n.similarity,
    coalesce(n.neighbor_moa = q.moa, false) as is_correct,
    coalesce(a.n_candidates, 0) as n_candidates,
    a.average_precision,
    q.norm = 0 as is_zero_norm
from queries as q
left join nearest as n
    using (feature_source, postprocessing, protocol, compound, concentration)
left join per_query as a
    using (feature_source, postprocessing, protocol, compound, concentration)
order by feature_source, postprocessing, protocol, compound, concentration
