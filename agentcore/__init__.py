"""meta_spider.agentcore"""
