#include "fleet/dashboard.h"

namespace outpost::fleet {

std::string_view DashboardHtml() {
  static constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outpost fleet</title><link rel="icon" href="data:,">
<style>
:root{--bg:#f6f7f9;--fg:#1b1f24;--mut:#5b6470;--card:#fff;--line:#dde1e6;--ok:#1a7f37;--bad:#c62828;--warn:#b26a00;--acc:#0b5cad}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;padding:.6rem 1rem;background:#14202e;color:#fff}
header h1{font-size:1.05rem;margin:0 1rem 0 0}nav{display:flex;gap:.25rem;flex-wrap:wrap}
nav button{background:none;border:1px solid transparent;color:#cfd8e3;padding:.35rem .7rem;border-radius:6px;font:inherit;cursor:pointer}
nav button[aria-selected=true]{background:#2b3d52;color:#fff}
main{padding:1rem;max-width:1200px;margin:auto}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:.75rem;margin-bottom:1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.75rem 1rem}
.card b{display:block;font-size:1.6rem}.card span{color:var(--mut);font-size:.85rem}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden}
th,td{text-align:left;padding:.5rem .6rem;border-bottom:1px solid var(--line);vertical-align:top;word-break:break-word}
th{font-size:.8rem;color:var(--mut);font-weight:600;background:#fafbfc}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.mut{color:var(--mut)}
.tag{display:inline-block;background:#e8eef6;border-radius:4px;padding:0 .35rem;margin:1px;font-size:.82rem}
.bar{height:8px;background:#e6e9ed;border-radius:4px;overflow:hidden;min-width:80px}.bar i{display:block;height:100%;background:var(--acc)}
form.login{max-width:420px;margin:3rem auto;background:var(--card);padding:1.25rem;border:1px solid var(--line);border-radius:10px}
input{width:100%;padding:.5rem;font:inherit;border:1px solid var(--line);border-radius:6px}
button.primary{margin-top:.75rem;background:var(--acc);color:#fff;border:0;padding:.5rem 1rem;border-radius:6px;font:inherit;cursor:pointer}
#error{color:var(--bad);margin:.5rem 0}
button.act{font:inherit;font-size:.85rem;padding:.2rem .6rem;margin:.1rem;border:1px solid var(--line);border-radius:6px;background:#fff;cursor:pointer}
@media (max-width:640px){thead{display:none}table,tbody,tr,td{display:block;width:100%}
tr{border-bottom:1px solid var(--line);padding:.4rem 0}td{border:0;padding:.2rem .6rem}
td::before{content:attr(data-label);display:block;font-size:.75rem;color:var(--mut)}}
</style></head>
<body>
<header><h1>Outpost fleet</h1><nav id="tabs" role="tablist"></nav></header>
<main><div id="error" role="alert"></div><div id="view"></div></main>
<script>
"use strict";
const tabs=["Overview","Devices","Deployments","Alerts","Audit"];
let current=location.hash.slice(1)||"Overview";
const token=()=>sessionStorage.getItem("outpost-token");
const esc=s=>String(s??"").replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const ago=ms=>{if(!ms)return"never";const s=Math.round((Date.now()-ms)/1000);return s<60?s+" s ago":s<3600?Math.round(s/60)+" min ago":s<86400?Math.round(s/3600)+" h ago":Math.round(s/86400)+" d ago"};
async function api(path,method){const r=await fetch("/api/v1/"+path,{method:method||"GET",headers:{Authorization:"Bearer "+token()}});
 const body=await r.json().catch(()=>({error:r.statusText}));
 if(r.status===401){sessionStorage.removeItem("outpost-token");const e=new Error(body.error);e.auth=true;throw e}
 if(!r.ok)throw new Error(body.error||r.statusText);return body}
function table(cols,rows){if(!rows.length)return'<p class="mut">Nothing here yet.</p>';
 return"<table><thead><tr>"+cols.map(c=>"<th>"+esc(c[0])+"</th>").join("")+"</tr></thead><tbody>"+
 rows.map(r=>"<tr>"+cols.map(c=>'<td data-label="'+esc(c[0])+'">'+c[1](r)+"</td>").join("")+"</tr>").join("")+"</tbody></table>"}
const tags=t=>Object.entries(t||{}).map(([k,v])=>'<span class="tag">'+esc(k)+"="+esc(v)+"</span>").join(" ");
const health=d=>d.revoked?'<span class="bad">revoked</span>':d.healthy?'<span class="ok">healthy</span>':'<span class="bad">unhealthy</span>';
const views={
 async Overview(){const [devs,deps,ros,evs]=await Promise.all([api("devices?limit=10000"),api("deployments"),api("rollouts"),api("events?limit=50")]);
  const unhealthy=devs.filter(d=>!d.healthy&&!d.revoked).length,active=ros.filter(r=>r.state==="running"||r.state==="paused");
  return'<div class="cards"><div class="card"><b id="count-devices">'+devs.length+'</b><span>devices</span></div>'+
  '<div class="card"><b class="'+(unhealthy?"bad":"ok")+'">'+unhealthy+'</b><span>unhealthy</span></div>'+
  '<div class="card"><b>'+deps.length+'</b><span>deployments</span></div>'+
  '<div class="card"><b>'+active.length+'</b><span>rollouts in progress</span></div>'+
  '<div class="card"><b class="'+(evs.length?"warn":"")+'">'+evs.filter(e=>e.event==="drift").length+'</b><span>recent drift alerts</span></div></div>'+
  "<h2>Rollouts</h2>"+rollouts(ros.slice(0,10))},
 async Devices(){const devs=await api("devices?limit=10000");
  return table([["Device",d=>"<code>"+esc(d.id)+"</code>"],["Health",health],["Tags",d=>tags(d.tags)],
   ["Agent",d=>esc(d.agent_version)],["Models",d=>tags(d.models)],["Last seen",d=>ago(d.last_seen_ms)]],devs)},
 async Deployments(){const [deps,ros]=await Promise.all([api("deployments"),api("rollouts")]);
  return"<h2>Deployments</h2>"+table([["Name",d=>esc(d.name)+(d.layered?' <span class="tag">layer</span>':"")],["Priority",d=>d.priority],
   ["Selector",d=>tags(d.selector)],["Packages",d=>tags(d.latest_packages)],["Revision",d=>"active "+d.active_revision+" / latest "+d.latest_revision]],deps)+
   "<h2>Rollouts</h2>"+rollouts(ros)},
 async Alerts(){const evs=await api("events?limit=500");
  return table([["When",e=>ago(e.time_ms||e.received_ms)],["Event",e=>'<span class="'+(e.event==="drift"?"warn":"bad")+'">'+esc(e.event)+"</span>"],
   ["Model",e=>esc(e.model)+(e.version?" / "+esc(e.version):"")],["Device",e=>"<code>"+esc(e.device_id)+"</code>"],["What",e=>esc(e.body&&e.body.body)]],evs)},
 async Audit(){const [log,v]=await Promise.all([api("audit?limit=10000"),api("audit/verify").catch(e=>({ok:false,problem:e.message}))]);
  return'<p id="audit-verdict" class="'+(v.ok?"ok":"bad")+'">'+(v.ok?"Chain verified: "+v.entries+" entries, head "+esc((v.head_hash||"").slice(0,16))+"…":"Chain broken: "+esc(v.problem))+"</p>"+
  table([["#",e=>e.seq],["When",e=>new Date(e.time_ms).toLocaleString()],["Who",e=>esc(e.actor)],["What",e=>esc(e.action)],["Target",e=>esc(e.target)],["From",e=>esc(e.source)]],log.reverse())}};
function rollouts(ros){return table([["#",r=>r.id],["Deployment",r=>esc(r.deployment)+" "+r.from_revision+" → "+r.to_revision],
 ["State",r=>'<span class="'+({completed:"ok",rolled_back:"bad",aborted:"bad",paused:"warn"}[r.state]||"")+'">'+esc(r.state)+"</span>"],
 ["Wave",r=>(r.wave+1)+" of "+r.waves.length+" ("+r.wave_percent+"%)"+'<div class="bar"><i style="width:'+(r.state==="completed"?100:r.wave_percent)+'%"></i></div>'],
 ["Why",r=>esc(r.reason)],
 ["",r=>(r.state==="running"?act(r,"pause")+act(r,"promote"):r.state==="paused"?act(r,"resume")+act(r,"promote"):"")+
   (r.state==="running"||r.state==="paused"?act(r,"abort"):"")]],ros)}
const act=(r,a)=>'<button class="act" data-rollout="'+r.id+'" data-action="'+a+'">'+a[0].toUpperCase()+a.slice(1)+"</button> ";
// Rollout actions need a write token; a read-only one is told so by the server's answer.
document.addEventListener("click",async e=>{const b=e.target.closest("button.act");if(!b)return;
 if(b.dataset.action==="abort"&&!confirm("Abort rollout "+b.dataset.rollout+" and send every device back?"))return;
 try{await api("rollouts/"+b.dataset.rollout+"/"+b.dataset.action,"POST");render()}
 catch(err){document.getElementById("error").textContent=err.message}});
function login(){document.getElementById("view").innerHTML='<form class="login" id="login"><h2>Sign in</h2><label for="tok">Operator token</label>'+
 '<input id="tok" type="password" autocomplete="off" required><button class="primary" type="submit">Open dashboard</button></form>';
 document.getElementById("login").onsubmit=e=>{e.preventDefault();sessionStorage.setItem("outpost-token",document.getElementById("tok").value.trim());render()}}
async function render(){const nav=document.getElementById("tabs");
 nav.innerHTML=tabs.map(t=>'<button role="tab" aria-selected="'+(t===current)+'" data-tab="'+t+'">'+t+"</button>").join("");
 nav.querySelectorAll("button").forEach(b=>b.onclick=()=>{current=b.dataset.tab;location.hash=current;render()});
 document.getElementById("error").textContent="";if(!token())return login();
 try{document.getElementById("view").innerHTML=await views[current]();document.body.dataset.loaded=current}
 catch(e){if(e.auth)login();document.getElementById("error").textContent=e.message}}
render();setInterval(()=>{if(token()&&!document.querySelector("form"))render()},10000);
</script></body></html>
)html";
  return kPage;
}

}  // namespace outpost::fleet
